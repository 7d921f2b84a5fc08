"""A stream with the real stages: SRT on loopback, the control socket, clear errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from media.analysis import (
    audio_envelope,
    av_skew_ms,
    mouth_audio_correlation,
    mouth_openness,
    mouth_rois,
    reply_onset,
    speech_threshold,
)
from media.gst.output import OutputRunner
from media.gst.pipelines import OutputSpec
from media.gst.source import SourceError, SourceRequest
from signaling.stream.cli import PLUGIN_DIR
from signaling.stream.source import StreamSource, open_source
from tests.media.gst.receiver import SrtReceiver, free_udp_port

ROOT = Path(__file__).resolve().parents[3]


class Control:
    """A client of the stream's control socket (JSON lines over TCP)."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._sock = socket.create_connection((host, int(port)), timeout=20)
        self._file = self._sock.makefile("rwb")

    def send(self, **message: Any) -> dict[str, Any]:
        self._file.write(json.dumps(message).encode() + b"\n")
        self._file.flush()
        answer: dict[str, Any] = json.loads(self._file.readline())
        return answer

    def close(self) -> None:
        self._file.close()
        self._sock.close()


@pytest.fixture
def control(stream_source: StreamSource) -> Any:
    client = Control(stream_source.control_address)
    yield client
    client.close()


@pytest.mark.slow
def test_srt_stream_lips_follow_the_voice(stream_source: StreamSource, control: Control) -> None:
    port = free_udp_port()
    receiver = SrtReceiver(port)
    receiver.start()
    spec = OutputSpec(url=receiver.uri, width=256, height=256, fps=25, video_bps=500_000)
    runner = OutputRunner(spec, stream_source, quality=False)
    stop = threading.Event()
    threading.Thread(target=runner.run, args=(stop,), daemon=True).start()
    try:
        assert receiver.wait_frames(25, timeout=20.0), "no video arrived"
        answer = control.send(
            type="say", text="Welcome to our live shop! Today every jacket is half price."
        )
        assert answer["ok"], answer
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            status = control.send(type="status")
            if answer["turn"] in status["finished_turns"] and not status["speaking"]:
                if status["queued_s"] == 0:
                    break
            time.sleep(0.2)
        time.sleep(0.8)
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
    chunks = got.audio_chunks()
    ends = got.audio_pts() + np.array([len(c) for c in chunks]) / 48000
    env = audio_envelope(chunks, list(ends), sample_rate=48000)
    onset = reply_onset(env, float(t[0]) + 0.5, threshold=speech_threshold(env, float(t[0]) + 0.9))
    assert onset is not None, "no speech in the received audio"
    loud = env.t[env.rms > speech_threshold(env, onset)]
    end = float(loud[-1])
    assert end - onset > 2.0
    box = stream_source.services.avatar("astronaut").mouth_box() if stream_source.services else None
    assert box is not None
    rois = mouth_rois(got.frames(), box)
    openness = mouth_openness(rois, t < onset - 0.1)
    ft = t + 0.02  # a frame stands for the middle of its 40 ms
    skew = av_skew_ms(ft, openness, env, onset - 0.3, end + 0.3)
    assert skew is not None and abs(skew) <= 40.0, f"A/V skew {skew} ms"
    matched, shuffled = mouth_audio_correlation(ft, openness, env, onset - 0.3, end + 0.3)
    assert matched > shuffled + 0.2, (matched, shuffled)


def test_control_commands_and_bad_input(stream_source: StreamSource, control: Control) -> None:
    assert control.send(type="say", text="   ") == {"ok": False, "error": "the text is empty"}
    assert "unknown command" in control.send(type="sing")["error"]
    answer = control.send(type="avatar", name="nobody")
    assert not answer["ok"] and "avatar 'nobody' is not prepared" in answer["error"]
    assert "not found" in control.send(type="audio", path="/nonexistent.wav")["error"]
    # the stream still works after bad input; an interrupt flushes what was queued
    turn = control.send(type="ask", text="What are your opening hours?")
    assert turn["ok"]
    assert control.send(type="interrupt")["ok"]
    status = control.send(type="status")
    assert status["ok"] and status["avatar"] == "astronaut"


def test_missing_avatar_is_a_clear_error(stream_config: Path) -> None:
    request = SourceRequest(avatar="nobody", config=str(stream_config), fps=25, height=256)
    with pytest.raises(
        SourceError, match=r"avatar 'nobody' is not prepared in .*avatar-rtc prepare"
    ):
        open_source(request)


def test_gst_inspect_finds_the_element() -> None:
    env = {**os.environ, "GST_PLUGIN_PATH": str(PLUGIN_DIR), "AVATAR_RTC_VENV": str(ROOT / ".venv")}
    # as docs/streaming.md says: outside the virtual environment (its python3 first on PATH
    # would be taken by the loader's embedded Python as its own)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    env["GST_REGISTRY"] = str(
        Path(os.environ.get("TMPDIR", "/tmp")) / f"gst-registry-{os.getpid()}.bin"
    )
    out = subprocess.run(
        ["gst-inspect-1.0", "avatarsrc"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for text in (
        "Avatar source",
        "SRC template: 'video'",
        "SRC template: 'audio'",
        "control",
        "dialogue",
    ):
        assert text in out.stdout, text
