#!/usr/bin/env bash
# Idempotent environment setup: apt packages, a venv in .venv, the project and its tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
want_apt="espeak-ng chromium iproute2 ffmpeg iptables flite festival festvox-kallpc16k festvox-us-slt-hts nginx-light gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp gstreamer1.0-python3-plugin-loader python3-gst-1.0 gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 libgirepository1.0-dev libcairo2-dev pkg-config libnginx-mod-rtmp"
missing=""
for p in $want_apt; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "setup: please install with apt:$missing" >&2
  fi
fi
stamp=.venv/.avatar-rtc-setup
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q torch==2.13.0
  .venv/bin/python -m pip install -q -e ".[dev,face,cluster,stream]"
  # mediapipe 0.10.21 ships FaceMesh; its declared deps would pull numpy<2 and jax, so no-deps.
  .venv/bin/python -m pip install -q --no-deps mediapipe==0.10.21
  touch "$stamp"
fi
