"""The recording bot's report: from arrival-stamped media and events to the call's numbers."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from media.analysis import (
    Envelope,
    MouthBox,
    audio_envelope,
    av_skew_ms,
    first_mouth_moving_frame,
    mouth_audio_correlation,
    mouth_openness,
    mouth_rois,
    reply_onset,
    rois_motion,
    silence_onset,
    speech_threshold,
)
from signaling.client.bot_media import ReceivedMedia

__all__ = ["DEFAULT_MOUTH_BOX", "BotReport", "CallRecord", "build_report"]

DEFAULT_MOUTH_BOX: MouthBox = (0.3, 0.55, 0.7, 0.9)
_REPLY_END_SILENCE_S = 1.0  # a pause this long ends the reply
# Silenced by a barge-in: quiet this long. Longer than a pause between the reply's sentences
# (which may start just after the interruption does), shorter than the wait for the next turn.
_BARGE_IN_SILENCE_S = 0.8


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """Everything the bot observed, on one monotonic clock (seconds)."""

    media: ReceivedMedia
    events: Sequence[tuple[float, dict[str, Any]]]  # (arrival time, WS event)
    t0: float  # when the bot started the call
    question_start_t: float | None  # the question went on air (speech or typed text)
    speech_end_t: float | None  # end of the bot's speech (or the moment text was sent)
    interrupt_start_t: float | None = None  # start of the interrupting speech
    idle_from_t: float | None = None  # the avatar idles (greeting over) from here to the reply
    mouth_box: MouthBox = DEFAULT_MOUTH_BOX
    errors: Sequence[str] = ()


@dataclass(slots=True, kw_only=True)
class BotReport:
    """The JSON report of one bot call (what ``avatar-rtc bot --report FILE`` writes).

    Times are measured at the bot from frame arrival times. Latencies count from the end of
    the bot's speech (``speech_end_ms``): to the first reply audio over the speech threshold
    and to the first frame whose mouth moves clearly beyond its idle baseline.
    ``mouth_audio_correlation`` compares mouth openness (distance of the mouth region from
    its idle appearance) with the reply's audio envelope, ``..._control`` the same against
    a block-shuffled envelope; the ``mouth_motion_...`` pair uses frame-to-frame motion.
    ``av_skew_ms`` > 0 means the video is late. ``barge_in_ms``: start of the interrupting
    speech → reply audio silent (for 0.8 s; a pause between sentences that begins right
    after the interruption and is prolonged by the barge-in counts from its start, so
    ``barge_in_event_ms``, the arrival of the server's ``barge_in`` event, is given too).
    """

    session: str | None = None
    t0_monotonic: float = 0.0  # the bot's clock at the call's start; event t_ms count from it
    question_start_ms: float | None = None  # the question went on air
    speech_end_ms: float | None = None  # end of the bot's speech: latencies count from it
    interrupt_start_ms: float | None = None
    avatar: str | None = None
    transcript: str | None = None
    turn: int | None = None
    reply_text: str = ""
    reply_audio_latency_ms: float | None = None
    reply_video_latency_ms: float | None = None
    reply_audio_s: float | None = None
    video_fps: float | None = None
    mouth_audio_correlation: float | None = None
    mouth_audio_correlation_control: float | None = None
    mouth_motion_audio_correlation: float | None = None
    mouth_motion_audio_correlation_control: float | None = None
    av_skew_ms: float | None = None
    barge_in_ms: float | None = None
    audio_frames: int = 0
    audio_s: float = 0.0
    video_frames: int = 0
    video_sizes: list[list[int]] = field(default_factory=list)
    mouth_box: list[float] = field(default_factory=list)
    timings: dict[str, Any] | None = None
    server_barge_in: dict[str, Any] | None = None
    barge_in_event_ms: float | None = None  # interruption start → server's barge_in event
    events: list[dict[str, Any]] = field(default_factory=list)
    record: str | None = None
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
        return out


def _r(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(float(x), nd)


def _ms(t: float | None, t0: float) -> float | None:
    return None if t is None else _r((t - t0) * 1000.0)


def _events_of(record: CallRecord, kind: str) -> list[tuple[float, dict[str, Any]]]:
    return [(t, e) for t, e in record.events if e.get("type") == kind]


def _reply_end(
    env: Envelope, onset: float, threshold: float, limit: float | None, listening: float | None
) -> float:
    """End of the reply's audio: its last loud window before a long silence.

    The silence is searched from the server's "listening" state (if it came after the
    onset), so pauses between sentences before the reply was complete do not end it.
    """
    search_from = listening if listening is not None and listening > onset else onset
    quiet = silence_onset(
        env, search_from, threshold=threshold, min_duration_s=_REPLY_END_SILENCE_S
    )
    stop = float(env.t[-1] + env.window_s) if quiet is None else quiet
    loud = np.flatnonzero((env.t >= onset) & (env.t < stop) & (env.rms > threshold))
    end = float(env.t[loud[-1]] + env.window_s) if loud.size else stop
    return min(end, limit) if limit is not None else end


def _text_fields(record: CallRecord, report: BotReport) -> None:
    after = record.question_start_t if record.question_start_t is not None else record.t0
    for _, e in _events_of(record, "hello"):
        report.session = e.get("session")
        report.avatar = e.get("avatar")
    transcripts = [e for t, e in _events_of(record, "transcript") if t >= after]
    if transcripts:
        report.transcript = str(transcripts[0].get("text", ""))
        report.turn = transcripts[0].get("turn")
    replies = [e for t, e in _events_of(record, "reply_text") if t >= after]
    if report.turn is None and replies:
        report.turn = replies[0].get("turn")
    mine = sorted(
        (e for e in replies if e.get("turn") == report.turn), key=lambda e: e.get("index", 0)
    )
    report.reply_text = " ".join(str(e.get("text", "")).strip() for e in mine).strip()
    for _, e in _events_of(record, "timings"):
        if e.get("turn") == report.turn:
            report.timings = e.get("stages")
    if record.interrupt_start_t is not None:
        s = record.interrupt_start_t
        later = [(t, e) for t, e in _events_of(record, "barge_in") if t >= s]
        if later:
            report.server_barge_in = later[0][1]
            report.barge_in_event_ms = _r((later[0][0] - s) * 1000.0)
    report.events = [{"t_ms": _r((t - record.t0) * 1000.0), **e} for t, e in record.events]


def _baseline_from(record: CallRecord) -> float | None:
    if record.idle_from_t is not None and record.speech_end_t is not None:
        if record.speech_end_t - record.idle_from_t >= 0.2:
            return record.idle_from_t
    return record.question_start_t


def _mouth_numbers(
    report: BotReport,
    ft: np.ndarray,
    rois: np.ndarray,
    motion: np.ndarray,
    rest: np.ndarray,
    env: Envelope,
    onset: float,
    end: float,
    errors: list[str],
) -> None:
    """fps, mouth/audio correlations and skew over the reply ``onset..end``."""
    report.video_fps = _r(np.count_nonzero((ft >= onset) & (ft < end)) / (end - onset), 2)
    openness = mouth_openness(rois, rest)
    lo, hi = onset - 0.3, end + 0.3
    try:
        c, ctrl = mouth_audio_correlation(ft, openness, env, lo, hi)
        report.mouth_audio_correlation = _r(c, 3)
        report.mouth_audio_correlation_control = _r(ctrl, 3)
        c, ctrl = mouth_audio_correlation(ft, motion, env, lo, hi)
        report.mouth_motion_audio_correlation = _r(c, 3)
        report.mouth_motion_audio_correlation_control = _r(ctrl, 3)
    except ValueError as exc:
        errors.append(f"mouth/audio correlation: {exc}")
    report.av_skew_ms = _r(av_skew_ms(ft, openness, env, lo, hi))


def build_report(record: CallRecord, *, record_path: str | None = None) -> BotReport:
    """Turn a CallRecord into the report's numbers; problems go to ``errors``, never raise."""
    m = record.media
    errors = list(record.errors)
    report = BotReport(
        audio_frames=len(m.audio_chunks),
        audio_s=round(sum(c.size for c in m.audio_chunks) / 48_000, 3),
        video_frames=len(m.video_frames),
        video_sizes=[list(s) for s in sorted(m.video_sizes)],
        mouth_box=list(record.mouth_box),
        record=record_path,
        t0_monotonic=record.t0,
        question_start_ms=_ms(record.question_start_t, record.t0),
        speech_end_ms=_ms(record.speech_end_t, record.t0),
        interrupt_start_ms=_ms(record.interrupt_start_t, record.t0),
    )
    _text_fields(record, report)
    ref = record.speech_end_t
    if ref is None:
        errors.append("the question never went on air; no latency measured")
        report.errors = errors
        return report
    env = audio_envelope(m.audio_chunks, m.audio_t, sample_rate=48_000)
    if env.t.size == 0:
        errors.append("no audio received")
        report.errors = errors
        return report
    thr = speech_threshold(env, ref)
    onset = reply_onset(env, ref, threshold=thr)
    if onset is None:
        errors.append("no reply audio after the question")
    else:
        report.reply_audio_latency_ms = _r((onset - ref) * 1000.0)
    ft = np.asarray(m.video_t)
    rois = mouth_rois(m.video_frames, record.mouth_box)
    motion = rois_motion(rois)
    idle_from = _baseline_from(record)
    if ft.size < 2:
        errors.append("no video received")
    else:
        moving = first_mouth_moving_frame(ft, motion, ref, baseline_from=idle_from)
        if moving is None:
            errors.append("the mouth never moved after the question")
        else:
            report.reply_video_latency_ms = _r((moving - ref) * 1000.0)
    if onset is not None:
        listening = [
            t for t, e in _events_of(record, "state") if t > onset and e.get("state") == "listening"
        ]
        end = _reply_end(
            env, onset, thr, record.interrupt_start_t, listening[0] if listening else None
        )
        report.reply_audio_s = _r(end - onset, 3)
        if ft.size >= 2 and end - onset >= 0.5:
            lo = idle_from if idle_from is not None and idle_from < ref else ref - 1.5
            rest = (ft >= lo) & (ft < ref)
            _mouth_numbers(report, ft, rois, motion, rest, env, onset, end, errors)
        elif ft.size >= 2:
            errors.append("reply shorter than 0.5 s: no fps, correlation or skew")
    if record.interrupt_start_t is not None:
        s = record.interrupt_start_t
        playing = reply_onset(env, s - 0.2, threshold=thr, min_duration_s=0.04)
        if playing is None or playing > s + 0.1:
            errors.append("reply audio was not playing when the interruption started")
        quiet = silence_onset(env, s, threshold=thr, min_duration_s=_BARGE_IN_SILENCE_S)
        if quiet is None:
            errors.append("reply audio never went silent after the interruption")
        else:
            report.barge_in_ms = _r((quiet - s) * 1000.0)
    report.errors = errors
    return report
