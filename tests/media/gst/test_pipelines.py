"""The output pipelines: each kind parses on this machine's GStreamer; HLS writes segments."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from media.gst.output import Backoff, OutputRunner
from media.gst.pipelines import OutputSpec, choose_encoder, describe, kind_of
from media.gst.runtime import gst, have
from tests.media.gst.synthetic import BurstSource


def test_kinds_from_urls() -> None:
    assert kind_of("rtmps://live.example.com/app/key") == "rtmp"
    assert kind_of("srt://127.0.0.1:9000?streamid=x") == "srt"
    assert kind_of("rtsp://127.0.0.1:8554/live") == "rtsp"
    assert kind_of("/var/www/hls") == "hls"
    with pytest.raises(ValueError, match="unsupported output URL"):
        kind_of("http://example.com/x")
    with pytest.raises(ValueError, match="VP8 cannot go into srt"):
        choose_encoder(OutputSpec(url="srt://127.0.0.1:9000", encoder="vp8"))
    with pytest.raises(ValueError, match="size must be even"):
        OutputSpec(url="srt://127.0.0.1:9000", width=511)


@pytest.mark.parametrize(
    "url",
    [
        "rtmp://127.0.0.1:1935/live/key",
        "srt://127.0.0.1:9000",
        "rtsp://127.0.0.1:8554/x",
        "/tmp/hls",
    ],
)
def test_every_output_parses(url: str) -> None:
    spec = OutputSpec(url=url)
    pipeline = gst().parse_launch(describe(spec))
    for name in ("src", "rung", "venc", "aenc", "sink"):
        assert pipeline.get_by_name(name) is not None, name
    expected = "nvh264enc" if have("nvh264enc") else "x264enc"
    assert pipeline.get_by_name("venc").get_factory().get_name() == expected


def test_vp8_over_rtsp_parses() -> None:
    spec = OutputSpec(url="rtsp://127.0.0.1:8554/x", encoder="vp8")
    pipeline = gst().parse_launch(describe(spec))
    assert pipeline.get_by_name("venc").get_factory().get_name() == "vp8enc"
    assert pipeline.get_by_name("aenc").get_factory().get_name() == "opusenc"


def test_rolling_hls(tmp_path: Path, bursts: BurstSource) -> None:
    spec = OutputSpec(url=str(tmp_path), width=256, height=256, video_bps=300_000, hls_segment_s=1)
    runner = OutputRunner(spec, bursts, backoff=Backoff(first_s=0.2))
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 25
    try:
        while time.monotonic() < deadline and len(list(tmp_path.glob("segment*.ts"))) < 3:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=10)
    playlist = (tmp_path / "playlist.m3u8").read_text()
    assert "#EXTM3U" in playlist and "segment00000.ts" in playlist
    assert len(list(tmp_path.glob("segment*.ts"))) >= 3
    assert [e.kind for e in runner.events] == ["playing"]
