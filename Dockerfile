# syntax=docker/dockerfile:1
# avatar-rtc on a CUDA host: `docker build -t avatar-rtc .` (see docs/deploy.md).
# Two stages: the builder makes a virtual environment in /opt/venv (CUDA torch, the project
# from /app, mediapipe) with compilers; the runtime copies /opt/venv and /app onto the CUDA
# runtime base with only what runs (python3.11, espeak-ng).

ARG CUDA_BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

# ---- builder -------------------------------------------------------------------------------
FROM ${CUDA_BASE} AS builder
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
# the project's extras; deploy/compose.cluster.yaml adds cluster (Ray Serve)
ARG EXTRAS=face
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      python3.11 python3.11-venv python3.11-dev build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the CUDA wheel index, so the project's pin does not pull the CPU wheel.
RUN pip install --upgrade pip \
 && pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
# The project is installed in editable mode from /app (static/ beside the packages is served;
# a wheel install carries the same pages as the signaling.static package).
WORKDIR /app
COPY pyproject.toml README.md ./
COPY media ./media
COPY inference ./inference
COPY signaling ./signaling
COPY static ./static
RUN pip install -e ".[${EXTRAS}]" \
 && pip install --no-deps mediapipe==0.10.21 \
 && python -c "import signaling.cli, inference.offline, media"

# ---- runtime -------------------------------------------------------------------------------
FROM ${CUDA_BASE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      python3.11 espeak-ng libgl1 libegl1 libglib2.0-0 ca-certificates \
 && apt-get purge -y software-properties-common gpg-agent \
 && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin avatar \
 && mkdir -p /data/avatars /data/cache /etc/avatar-rtc \
 && chown -R avatar:avatar /data
COPY deploy/config.yaml /etc/avatar-rtc/config.yaml
# Facts of the container (the environment beats the YAML file): listen on every interface,
# prepared avatars and caches (numba, torch.compile, Hugging Face) on the /data volume.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AVATAR_RTC_HOST=0.0.0.0 \
    AVATAR_RTC_RENDER__AVATARS_DIR=/data/avatars \
    AVATAR_RTC_DATA_DIR=/data \
    XDG_CACHE_HOME=/data/cache \
    HF_HOME=/data/cache/huggingface \
    NUMBA_CACHE_DIR=/data/cache/numba \
    TORCHINDUCTOR_CACHE_DIR=/data/cache/torchinductor \
    MPLCONFIGDIR=/data/cache/matplotlib
USER avatar
WORKDIR /home/avatar
VOLUME ["/data"]
# HTTP (page, /offer, /ws, /health, /metrics). WebRTC media uses ephemeral UDP ports: see
# docs/deploy.md (host networking, or a port range plus TURN).
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health/live', timeout=4)"]
ENTRYPOINT ["avatar-rtc"]
CMD ["serve", "--config", "/etc/avatar-rtc/config.yaml"]
