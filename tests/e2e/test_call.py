"""End to end on loopback: the real server process, the real bot, real models, real WebRTC."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest
from aiohttp import ClientSession, WSMsgType

from inference.dialogue import FaqDialogueOptions, make_dialogue
from inference.dialogue.faq import FaqDialogue
from signaling.client.bot import BotOptions, run_bot

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def expected_answer(question: str) -> str:
    faq = make_dialogue(FaqDialogueOptions())
    assert isinstance(faq, FaqDialogue)
    assert faq.match(question) is not None, "the question must hit a knowledge-base entry"
    return " ".join(faq.answer_text(question)[0].split())


def said(text: str) -> str:
    return " ".join(text.split())


async def test_spoken_question_gets_the_faq_answer_with_moving_lips(
    server: str,
    speak,  # type: ignore[no-untyped-def]
) -> None:
    question = "What are your opening hours?"
    record = ARTIFACTS / "e2e-opening-hours.mp4"
    report = await run_bot(
        BotOptions(
            url=server,
            audio=speak(question),
            record=record,
            report=ARTIFACTS / "e2e-opening-hours.json",
            timeout_s=40,
        )
    )
    assert not report.errors, report.errors
    assert report.transcript is not None and "opening hours" in report.transcript.lower()
    # The whole FAQ answer came back as text, sentence by sentence.
    assert said(report.reply_text) == expected_answer(question)
    # Reply audio carries speech, video arrives at ~25 fps, lips follow the voice.
    assert report.reply_audio_s is not None and report.reply_audio_s > 2.0
    assert report.video_fps is not None and report.video_fps >= 24.0
    assert report.mouth_audio_correlation is not None
    assert report.mouth_audio_correlation_control is not None
    assert report.mouth_audio_correlation > report.mouth_audio_correlation_control + 0.2
    assert report.av_skew_ms is not None and abs(report.av_skew_ms) <= 80
    assert report.reply_audio_latency_ms is not None and report.reply_audio_latency_ms < 6000
    assert report.timings is not None and "first_sent" in report.timings
    # The recording is a playable MP4 with both streams.
    with av.open(str(record)) as container:
        kinds = {s.type for s in container.streams}
        assert {"audio", "video"} <= kinds
        frames = sum(1 for _ in container.decode(video=0))
    assert frames > 50


async def test_barge_in_silences_the_avatar(server: str, speak) -> None:  # type: ignore[no-untyped-def]
    report = await run_bot(
        BotOptions(
            url=server,
            audio=speak("Tell me about your return policy."),
            interrupt_audio=speak("Wait, actually I want to talk to a person."),
            interrupt_after_ms=800,
            report=ARTIFACTS / "e2e-barge-in.json",
            timeout_s=40,
        )
    )
    assert not report.errors, report.errors
    assert report.server_barge_in is not None
    assert report.barge_in_ms is not None and report.barge_in_ms < 1500


async def test_typed_text_question(server: str) -> None:
    report = await run_bot(BotOptions(url=server, text="How can I pay?", timeout_s=40))
    assert not report.errors, report.errors
    assert said(report.reply_text) == expected_answer("How can I pay?")


async def test_bad_input_gets_clear_errors_and_other_calls_live(server: str) -> None:
    async with ClientSession() as http:
        async with http.post(server + "/offer", data=b"{oops") as r:
            assert r.status == 400
            assert "JSON" in (await r.json())["error"]
        bad_sdp = {"sdp": "v=0\r\nthis is not sdp", "type": "offer"}
        async with http.post(server + "/offer", json=bad_sdp) as r:
            assert r.status == 400
            assert "SDP" in (await r.json())["error"]
        async with http.ws_connect(server + "/ws?session=nope") as ws:
            msg = await ws.receive(timeout=5)
            assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
            assert ws.close_code == 4404
        async with http.get(server + "/health/ready") as r:
            assert r.status == 200


def test_static_page_and_avatars(server: str) -> None:
    with urllib.request.urlopen(server + "/") as r:
        assert b"<video" in r.read()
    with urllib.request.urlopen(server + "/avatars") as r:
        body = json.loads(r.read())
    assert body["default"] in body["avatars"]
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server + "/static/../pyproject.toml")
    assert info.value.code in (403, 404)


def test_bot_rejects_unreadable_wav(server: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not a wav at all" + np.arange(100, dtype=np.uint8).tobytes())
    proc = subprocess.run(
        [sys.executable, "-m", "signaling.cli", "bot", "--url", server, "--audio", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "bad.wav" in proc.stderr + proc.stdout


async def test_two_calls_at_once(server: str) -> None:
    a, b = await asyncio.gather(
        run_bot(BotOptions(url=server, text="Where is my order?", timeout_s=40)),
        run_bot(BotOptions(url=server, text="Do you ship internationally?", timeout_s=40)),
    )
    assert not a.errors and not b.errors
    assert a.session != b.session
    assert said(a.reply_text) == expected_answer("Where is my order?")
    assert said(b.reply_text) == expected_answer("Do you ship internationally?")
