"""avatarsrc on real pipelines: caps negotiation, errors, and SRT on loopback."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from gi.repository import GLib

from media.analysis import audio_envelope, av_skew_ms, mouth_openness, mouth_rois
from media.gst.output import Backoff, OutputRunner
from media.gst.pipelines import OutputSpec
from media.gst.runtime import gst
from tests.media.gst.receiver import SrtReceiver, free_udp_port
from tests.media.gst.synthetic import MOUTH_BOX, BurstSource


def _play_until_error(description: str, source: Any | None, seconds: float = 3.0) -> str:
    Gst = gst()
    pipeline = Gst.parse_launch(description)
    if source is not None:
        pipeline.get_by_name("src").use_source(source)
    pipeline.set_state(Gst.State.PLAYING)
    try:
        msg = pipeline.get_bus().timed_pop_filtered(
            int(seconds * Gst.SECOND), Gst.MessageType.ERROR
        )
        return "" if msg is None else msg.parse_error()[0].message
    finally:
        pipeline.set_state(Gst.State.NULL)


def test_caps_that_cannot_be_met_are_a_clear_error(bursts: BurstSource) -> None:
    # linked directly, gst-launch refuses at once (the pad template says what it makes)
    with pytest.raises(GLib.Error, match="src can't handle caps"):
        gst().parse_launch("avatarsrc name=src src.video ! video/x-raw,framerate=7/1 ! fakesink")
    # caps set after linking: the element finds out when it negotiates, and says what it makes
    text = _caps_error(bursts, "video/x-raw,framerate=7/1")
    assert "avatarsrc makes video/x-raw" in text and "framerate=(fraction)7/1" in text
    text = _caps_error(bursts, "video/x-raw,format=I420")
    assert "downstream accepts only" in text and "I420" in text


def _caps_error(source: BurstSource, caps: str) -> str:
    Gst = gst()
    pipeline = Gst.Pipeline.new()
    src = Gst.ElementFactory.make("avatarsrc", "src")
    capsfilter = Gst.ElementFactory.make("capsfilter")
    sink = Gst.ElementFactory.make("fakesink")
    for element in (src, capsfilter, sink):
        pipeline.add(element)
    src.link(capsfilter)
    capsfilter.link(sink)
    capsfilter.set_property("caps", Gst.Caps.from_string(caps))
    src.use_source(source)
    assert pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE
    try:
        msg = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
        return "" if msg is None else str(msg.parse_error()[0].message)
    finally:
        pipeline.set_state(Gst.State.NULL)


def test_missing_avatar_is_a_clear_error() -> None:
    text = _play_until_error("avatarsrc avatar=nobody ! fakesink", None)
    assert "avatar 'nobody'" in text


def test_negotiates_size_and_rate_from_downstream(bursts: BurstSource) -> None:
    Gst = gst()
    pipeline = Gst.parse_launch(
        "avatarsrc name=src src.video ! video/x-raw,width=320,height=180 ! "
        "appsink name=v sync=false src.audio ! appsink name=a sync=false"
    )
    src = pipeline.get_by_name("src")
    src.use_source(bursts)
    pipeline.set_state(Gst.State.PLAYING)
    try:
        video = pipeline.get_by_name("v").emit("try-pull-sample", 3 * Gst.SECOND)
        audio = pipeline.get_by_name("a").emit("try-pull-sample", 3 * Gst.SECOND)
        assert video is not None and audio is not None
        s = video.get_caps().get_structure(0)
        assert (s.get_int("width")[1], s.get_int("height")[1]) == (320, 180)
        assert s.get_fraction("framerate")[1:] == (25, 1)  # nearest to 25 fps
        assert audio.get_caps().get_structure(0).get_int("rate")[1] == 48000
        assert src.size == (320, 180)
    finally:
        pipeline.set_state(Gst.State.NULL)


def _stream(runner: OutputRunner, seconds: float) -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=runner.run, args=(stop,), daemon=True).start()
    threading.Timer(seconds, stop.set).start()
    return stop


def test_srt_loopback_keeps_rate_and_lip_sync(bursts: BurstSource) -> None:
    port = free_udp_port()
    receiver = SrtReceiver(port)
    receiver.start()
    spec = OutputSpec(url=receiver.uri, width=256, height=256, fps=25, video_bps=600_000)
    runner = OutputRunner(spec, bursts, quality=False)
    stop = _stream(runner, 7.0)
    try:
        assert receiver.wait_frames(25 * 5, timeout=20.0), "fewer than 5 s of video arrived"
    finally:
        stop.set()
        time.sleep(0.3)
        receiver.stop()
    got = receiver.got
    t = got.video_times()
    assert abs(float(np.median(np.diff(t))) - 0.04) < 1e-3  # a 25 fps stream
    # a live pipeline drops frames rather than fall behind: few, even on a busy machine
    delivered = (len(t) - 1) / ((t[-1] - t[0]) * 25.0)
    assert delivered > 0.8, f"only {delivered:.0%} of the frames arrived"
    rois = mouth_rois(got.frames(), MOUTH_BOX)
    openness = mouth_openness(rois, np.zeros(len(rois), bool))
    chunks = got.audio_chunks()
    ends = got.audio_pts() + np.array([len(c) for c in chunks]) / 48000
    env = audio_envelope(chunks, list(ends), sample_rate=48000)
    skew = av_skew_ms(t + 0.02, openness, env, float(t[0]) + 0.5, float(t[-1]) - 0.5)
    assert skew is not None and abs(skew) <= 40.0, f"A/V skew {skew} ms"


def test_ingest_that_drops_and_returns(bursts: BurstSource) -> None:
    port = free_udp_port()
    receiver = SrtReceiver(port, keep_frames=False)
    receiver.start()
    spec = OutputSpec(url=receiver.uri, width=256, height=256, fps=25, video_bps=400_000)
    runner = OutputRunner(spec, bursts, quality=False, backoff=Backoff(first_s=0.2, max_s=1.0))
    stop = _stream(runner, 30.0)
    try:
        assert receiver.wait_frames(25, timeout=15.0)
        receiver.stop()
        down_at = time.monotonic()
        clock_at_drop = bursts.clock.now()
        time.sleep(2.0)
        receiver.start()
        returned = time.monotonic()
        assert receiver.wait_frames(10, timeout=15.0), "no video after the ingest came back"
        recovered_s = receiver.got.video[-10][1] - returned
    finally:
        stop.set()
        time.sleep(0.3)
        receiver.stop()
    kinds = [e.kind for e in runner.events]
    assert "dropped" in kinds and "retry" in kinds and kinds.count("playing") >= 2
    assert recovered_s < 6.0, f"recovery took {recovered_s:.1f} s"
    # while no output played, the source's clock stood still (its place was kept)
    dropped = next(e.at for e in runner.events if e.kind == "dropped")
    replayed = [e.at for e in runner.events if e.kind == "playing"][-1]
    stalled = bursts.clock.now() - clock_at_drop
    assert stalled < (time.monotonic() - down_at) - (replayed - dropped) + 1.0


def test_end_of_stream_closes_a_recording(bursts: BurstSource, tmp_path: Path) -> None:
    Gst = gst()
    out = tmp_path / "take.mp4"
    pipeline = Gst.parse_launch(
        "avatarsrc name=src src.video ! video/x-raw,width=256,height=256 ! videoconvert ! "
        "x264enc tune=zerolatency speed-preset=ultrafast ! h264parse ! queue ! mp4mux name=m ! "
        f"filesink location={out} src.audio ! audioconvert ! avenc_aac ! queue ! m."
    )
    pipeline.get_by_name("src").use_source(bursts)
    pipeline.set_state(Gst.State.PLAYING)
    time.sleep(2.0)
    pipeline.send_event(Gst.Event.new_eos())
    msg = pipeline.get_bus().timed_pop_filtered(
        10 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR
    )
    pipeline.set_state(Gst.State.NULL)
    assert msg is not None and msg.type == Gst.MessageType.EOS
    with av.open(str(out)) as container:
        kinds = {s.type for s in container.streams}
        frames = sum(1 for _ in container.decode(video=0))
    assert kinds == {"audio", "video"} and frames >= 25
