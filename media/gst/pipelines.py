"""``gst-launch``-style descriptions of the common outputs of an avatar stream.

:func:`describe` turns an :class:`OutputSpec` into one pipeline description: ``avatarsrc``
(named ``src``), a fixed-size raw video branch with a ``rung`` capsfilter the congestion
glue can lower, the encoder (``venc``: NVENC through nvcodec where this machine has it,
else x264; VP8 where the container carries it), AAC or Opus voice (``aenc``) and the
output: RTMP(S) (``flvmux`` + ``rtmp2sink``), SRT (``mpegtsmux`` + ``srtsink``), an RTSP
server in record mode (``rtspclientsink``) or rolling HLS segments (``hlssink2``). The sink
is named ``sink`` (the ``mux`` for RTSP and HLS, which mux and send in one element).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from media.gst.runtime import GstMissing, missing

__all__ = ["KINDS", "OutputSpec", "choose_encoder", "describe", "kind_of", "required"]

KINDS = ("rtmp", "srt", "rtsp", "hls")
_ENCODERS = ("auto", "nvenc", "x264", "vp8")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputSpec:
    """Where and how a stream goes out."""

    url: str  # rtmp://, rtmps://, srt://, rtsp://, or a folder for HLS
    kind: str = ""  # one of KINDS; "" = from the URL
    width: int = 512
    height: int = 512
    fps: int = 25
    video_bps: int = 1_500_000
    audio_bps: int = 96_000
    encoder: str = "auto"
    keyframe_s: float = 2.0
    srt_latency_ms: int = 120
    hls_segment_s: int = 2
    hls_segments: int = 6

    def __post_init__(self) -> None:
        if self.encoder not in _ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(_ENCODERS)}, not {self.encoder!r}")
        if (self.kind or kind_of(self.url)) not in KINDS:
            raise ValueError(f"output kind must be one of {', '.join(KINDS)}")
        if self.width % 2 or self.height % 2 or self.width < 16 or self.height < 16:
            raise ValueError(f"size must be even and >= 16, got {self.width}x{self.height}")
        if not 100_000 <= self.video_bps <= 50_000_000:
            raise ValueError(f"video bitrate must be 100 kbps..50 Mbps, got {self.video_bps}")
        if not 16_000 <= self.audio_bps <= 320_000:
            raise ValueError(f"audio bitrate must be 16..320 kbps, got {self.audio_bps}")

    @property
    def output_kind(self) -> str:
        return self.kind or kind_of(self.url)


def kind_of(url: str) -> str:
    """The output kind a URL names (an ``rtmps://`` URL is RTMP; a path is HLS)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("rtmp", "rtmps"):
        return "rtmp"
    if scheme in ("srt", "rtsp"):
        return scheme
    if scheme in ("", "file"):
        return "hls"
    raise ValueError(f"unsupported output URL {url!r}: use rtmp(s)://, srt://, rtsp:// or a folder")


def choose_encoder(spec: OutputSpec) -> str:
    """``nvenc`` when asked or (``auto``) when nvcodec's H.264 encoder is registered on this
    machine, else ``x264``; ``vp8`` only when asked (RTSP carries it; FLV, MPEG-TS and HLS
    do not)."""
    if spec.encoder == "vp8" and spec.output_kind != "rtsp":
        raise ValueError(f"VP8 cannot go into {spec.output_kind} (its container is H.264/AAC)")
    if spec.encoder == "auto":
        return "x264" if missing(["nvh264enc"]) else "nvenc"
    return spec.encoder


def _video_encoder(spec: OutputSpec, encoder: str) -> str:
    kbps = spec.video_bps // 1000
    gop = max(1, round(spec.keyframe_s * spec.fps))
    if encoder == "nvenc":
        return (
            f"nvh264enc name=venc bitrate={kbps} rc-mode=cbr gop-size={gop} zerolatency=true "
            "bframes=0 ! h264parse config-interval=-1"
        )
    if encoder == "vp8":
        return (
            f"vp8enc name=venc target-bitrate={spec.video_bps} end-usage=cbr deadline=1 "
            f"cpu-used=8 keyframe-max-dist={gop} error-resilient=default"
        )
    return (
        f"x264enc name=venc bitrate={kbps} tune=zerolatency speed-preset=veryfast "
        f"key-int-max={gop} bframes=0 threads=1 ! video/x-h264,profile=high "
        "! h264parse config-interval=-1"
    )


def _audio_encoder(spec: OutputSpec) -> str:
    if spec.output_kind == "rtsp" and spec.encoder == "vp8":
        return f"opusenc name=aenc bitrate={spec.audio_bps}"
    aac = "avenc_aac" if not missing(["avenc_aac"]) else "voaacenc"
    return f"{aac} name=aenc bitrate={spec.audio_bps} ! aacparse"


def _output(spec: OutputSpec) -> tuple[str, str, str]:
    """(muxer-and-sink description, video link target, audio link target)."""
    kind = spec.output_kind
    if kind == "rtmp":
        return (
            f"flvmux name=mux streamable=true ! rtmp2sink name=sink location={spec.url} "
            "async-connect=false",
            "mux.",
            "mux.",
        )
    if kind == "srt":
        return (
            "mpegtsmux name=mux alignment=7 ! "
            f"srtsink name=sink uri={spec.url} latency={spec.srt_latency_ms} "
            "wait-for-connection=false auto-reconnect=false sync=false",
            "mux.",
            "mux.",
        )
    if kind == "rtsp":
        return f"rtspclientsink name=sink location={spec.url} latency=0", "sink.", "sink."
    folder = Path(spec.url.removeprefix("file://"))
    return (
        f"hlssink2 name=sink location={folder / 'segment%05d.ts'} "
        f"playlist-location={folder / 'playlist.m3u8'} target-duration={spec.hls_segment_s} "
        f"max-files={spec.hls_segments + 2} playlist-length={spec.hls_segments}",
        "sink.video",
        "sink.audio",
    )


def describe(spec: OutputSpec, *, source: str = "avatarsrc name=src") -> str:
    """The pipeline description of ``spec`` (``source`` is the avatarsrc element, with
    any properties)."""
    encoder = choose_encoder(spec)
    out, video_to, audio_to = _output(spec)
    raw = f"video/x-raw,width={spec.width},height={spec.height},framerate={spec.fps}/1"
    rung = f"video/x-raw,format=I420,width={spec.width},height={spec.height},framerate={spec.fps}/1"
    return (
        f"{source} "
        f"src.video ! {raw} ! queue max-size-buffers=3 leaky=downstream ! videoconvert ! "
        f"videoscale ! videorate drop-only=true ! capsfilter name=rung caps={rung} ! "
        f"{_video_encoder(spec, encoder)} ! queue ! {video_to} "
        "src.audio ! queue max-size-time=200000000 ! audioconvert ! audioresample ! "
        f"audio/x-raw,channels=2 ! {_audio_encoder(spec)} ! queue ! {audio_to} "
        f"{out}"
    )


def required(spec: OutputSpec) -> list[str]:
    """The element factories ``spec``'s pipeline needs; raises :class:`GstMissing` naming
    the absent ones and the apt package that holds each."""
    kind = spec.output_kind
    encoder = choose_encoder(spec)
    needs = ["appsrc", "videoconvert", "videoscale", "videorate", "audioconvert"]
    needs += {"nvenc": ["nvh264enc", "h264parse"], "x264": ["x264enc", "h264parse"]}.get(
        encoder, ["vp8enc"]
    )
    needs += {
        "rtmp": ["flvmux", "rtmp2sink"],
        "srt": ["mpegtsmux", "srtsink"],
        "rtsp": ["rtspclientsink"],
        "hls": ["hlssink2"],
    }[kind]
    absent = missing(needs)
    if absent:
        packages = {
            "x264enc": "gstreamer1.0-plugins-ugly",
            "rtspclientsink": "gstreamer1.0-rtsp",
            "nvh264enc": "gstreamer1.0-plugins-bad (and an NVIDIA driver)",
        }
        names = ", ".join(
            f"{e} ({packages.get(e, 'gstreamer1.0-plugins-good/-bad')})" for e in absent
        )
        raise GstMissing(f"this machine's GStreamer lacks {names}")
    return needs
