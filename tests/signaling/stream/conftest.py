"""The stream's real stack (piper, the warp renderer, GStreamer) on loopback; skipped,
saying why, only where GStreamer is not installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from media.gst.runtime import GstMissing, gst, missing

try:
    gst()
    _ABSENT = missing(["appsrc", "x264enc", "mpegtsmux", "srtsink", "srtsrc", "avdec_h264"])
    _WHY = f"GStreamer lacks {', '.join(_ABSENT)} (scripts/setup.sh installs it)"
except GstMissing as exc:
    _ABSENT, _WHY = ["gstreamer"], str(exc)

if _ABSENT:
    pytest.skip(_WHY, allow_module_level=True)

from media.gst.source import SourceRequest
from signaling.stream.source import StreamSource, open_source


@pytest.fixture(scope="module")
def stream_config(tmp_path_factory: pytest.TempPathFactory, avatars_root: Path) -> Path:
    """Fake ASR (a stream has no microphone), the real FAQ dialogue, piper and warp."""
    path = tmp_path_factory.mktemp("stream") / "stream.yaml"
    path.write_text(
        f"asr:\n  backend: fake\nrender:\n  avatars_dir: {avatars_root}\ncache:\n  enabled: false\n"
    )
    return path


@pytest.fixture(scope="module")
def stream_source(stream_config: Path) -> Iterator[StreamSource]:
    """One stream's timeline and control socket for the module (models load once)."""
    from media.gst.element import register

    register(open_source)
    request = SourceRequest(
        avatar="astronaut",
        config=str(stream_config),
        control="127.0.0.1:0",
        dialogue=True,
        fps=25,
        height=256,
    )
    source = open_source(request)
    yield source
    source.close()
