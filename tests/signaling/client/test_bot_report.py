"""The bot's report assembly from a synthetic call record with known truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from signaling.client.bot_media import ReceivedMedia
from signaling.client.bot_report import CallRecord, build_report

SR = 48_000
BOX = (0.3, 0.6, 0.7, 0.9)


def _media(
    reply_start: float,
    reply_stop: float,
    video_lag: float,
    total: float = 16.0,
    gap: tuple[float, float] | None = None,
):
    """20 ms audio chunks and 25 fps frames on arrival times 0..total; a reply in between."""
    rng = np.random.default_rng(3)
    m = ReceivedMedia()
    env100 = np.zeros(int(total * 100))
    s = int(reply_start * 100)
    while s < int(reply_stop * 100):
        d = int(rng.integers(12, 30))
        seg = np.sin(np.pi * np.arange(d) / d) * rng.uniform(0.5, 1.0)
        n = min(d, int(reply_stop * 100) - s)
        env100[s : s + n] = seg[:n]
        s += d + int(rng.integers(3, 18))
    if gap is not None:
        env100[int(gap[0] * 100) : int(gap[1] * 100)] = 0.0
    for k in range(int(total * 50)):
        t = (np.arange(960) + k * 960) / SR
        amp = env100[np.minimum((t * 100).astype(int), env100.size - 1)]
        x = 0.3 * amp * np.sin(2 * np.pi * 200 * t) + 1e-4 * rng.standard_normal(960)
        m.audio_chunks.append((x * 32767).astype(np.int16))
        m.audio_t.append((k + 1) * 0.02)
    for k in range(int(total * 25)):
        ft = k * 0.04
        o = env100[min(env100.size - 1, max(0, int((ft - video_lag) * 100)))]
        img = np.full((96, 96), 170, np.uint8)
        half = 1 + int(o * 10)
        img[80 - half : 80 + half, 36:60] = 20
        m.video_frames.append(img)
        m.video_t.append(ft)
    m.video_sizes.add((96, 96))
    return m


def _events(*items: tuple[float, dict]) -> list[tuple[float, dict]]:
    return sorted(items, key=lambda x: x[0])


EVENTS = _events(
    (0.1, {"type": "hello", "session": "abc", "avatar": "astro", "fps": 25, "mouth_box": BOX}),
    (0.5, {"type": "transcript", "text": "greeting echo", "language": "en", "turn": 0}),
    (6.2, {"type": "transcript", "text": "when do you open", "language": "en", "turn": 1}),
    (6.5, {"type": "reply_text", "text": "Weekends too.", "language": "en", "turn": 1, "index": 1}),
    (
        6.4,
        {"type": "reply_text", "text": "We open at nine.", "language": "en", "turn": 1, "index": 0},
    ),
    (6.6, {"type": "timings", "turn": 1, "stages": {"asr_done": 120.0, "first_audio": 480.0}}),
)


def test_report_numbers_match_the_truth() -> None:
    media = _media(reply_start=6.7, reply_stop=12.0, video_lag=0.08)
    record = CallRecord(
        media=media, events=EVENTS, t0=0.0, question_start_t=4.0, speech_end_t=6.0, mouth_box=BOX
    )
    r = build_report(record, record_path="x.mp4")
    assert r.errors == []
    assert (r.session, r.avatar, r.turn) == ("abc", "astro", 1)
    assert r.transcript == "when do you open"
    assert r.reply_text == "We open at nine. Weekends too."
    assert r.timings == {"asr_done": 120.0, "first_audio": 480.0}
    assert r.reply_audio_latency_ms == pytest.approx(700, abs=45)
    assert r.reply_video_latency_ms == pytest.approx(780, abs=90)
    assert r.video_fps == pytest.approx(25, abs=0.5)
    assert r.av_skew_ms == pytest.approx(80, abs=25)
    assert r.mouth_audio_correlation is not None and r.mouth_audio_correlation_control is not None
    assert r.mouth_audio_correlation > r.mouth_audio_correlation_control + 0.3
    assert r.reply_audio_s == pytest.approx(5.3, abs=0.2)
    assert r.barge_in_ms is None
    assert (r.audio_frames, r.video_frames, r.video_sizes) == (800, 400, [[96, 96]])
    data = r.to_json()
    assert json.loads(json.dumps(data))["events"][2]["t_ms"] == 6200.0


def test_reply_with_a_long_pause_ends_after_listening() -> None:
    media = _media(reply_start=6.7, reply_stop=12.0, video_lag=0.0, gap=(8.0, 9.5))
    base = dict(media=media, t0=0.0, question_start_t=4.0, speech_end_t=6.0, mouth_box=BOX)
    listening = (11.9, {"type": "state", "state": "listening"})
    whole = build_report(CallRecord(events=[*EVENTS, listening], **base))  # type: ignore[arg-type]
    assert whole.reply_audio_s == pytest.approx(5.3, abs=0.2)
    # without the server's "listening" the pause looks like the end of the reply
    cut = build_report(CallRecord(events=EVENTS, **base))  # type: ignore[arg-type]
    assert cut.reply_audio_s == pytest.approx(1.3, abs=0.2)


def test_report_barge_in() -> None:
    # a pause between sentences starts right after the interruption: not the barge-in
    media = _media(reply_start=6.7, reply_stop=8.05, video_lag=0.0, gap=(7.65, 7.95))
    record = CallRecord(
        media=media,
        events=[*EVENTS, (8.1, {"type": "barge_in", "turn": 1, "dropped_s": 2.0})],
        t0=0.0,
        question_start_t=4.0,
        speech_end_t=6.0,
        interrupt_start_t=7.6,
        mouth_box=BOX,
    )
    r = build_report(record)
    assert r.barge_in_ms == pytest.approx(450, abs=45)
    assert r.server_barge_in == {"type": "barge_in", "turn": 1, "dropped_s": 2.0}
    assert r.barge_in_event_ms == pytest.approx(500.0)
    assert r.errors == []


def test_report_lists_what_went_wrong() -> None:
    silent = _media(reply_start=100.0, reply_stop=100.0, video_lag=0.0, total=8.0)
    r = build_report(
        CallRecord(media=silent, events=[], t0=0.0, question_start_t=2.0, speech_end_t=3.0)
    )
    assert r.reply_audio_latency_ms is None and r.reply_video_latency_ms is None
    assert "no reply audio after the question" in r.errors
    assert "the mouth never moved after the question" in r.errors
    r2 = build_report(
        CallRecord(
            media=ReceivedMedia(),
            events=[],
            t0=0.0,
            question_start_t=None,
            speech_end_t=None,
            errors=["server error event: boom"],
        )
    )
    assert r2.errors[0] == "server error event: boom"
    assert "never went on air" in r2.errors[1]
    r3 = build_report(
        CallRecord(
            media=silent,
            events=[],
            t0=0.0,
            question_start_t=2.0,
            speech_end_t=3.0,
            interrupt_start_t=5.0,
        )
    )
    assert "reply audio was not playing when the interruption started" in r3.errors
