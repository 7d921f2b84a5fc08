"""SRT's and RTMP's send-side signals drive the quality controller and a real encoder."""

from __future__ import annotations

from typing import Any

import pytest

from media.gst.congestion import SendStats, StreamQuality, parse_srt_stats, stream_ladder
from media.gst.runtime import gst


def _elements() -> tuple[Any, Any]:
    Gst = gst()
    encoder = Gst.ElementFactory.make("x264enc")
    encoder.set_property("bitrate", 1500)
    rung = Gst.ElementFactory.make("capsfilter")
    return encoder, rung


def test_ladder_starts_at_the_stream() -> None:
    ladder = stream_ladder(512, 25, 1_500_000)
    assert ladder[0].height == 512 and ladder[0].fps == 25 and ladder[0].bitrate == 1_500_000
    assert [r.height for r in ladder] == sorted((r.height for r in ladder), reverse=True)
    assert all(48000 % r.fps == 0 for r in ladder)


def test_loss_steps_down_without_storms() -> None:
    encoder, rung = _elements()
    quality = StreamQuality(
        kind="srt",
        sink=None,
        encoder=encoder,
        rung_filter=rung,
        width=512,
        height=512,
        fps=25,
        bitrate=1_500_000,
    )
    sent = lost = 0
    changes = []
    for i in range(60):  # 12 s at 5 polls a second, 20 % of packets lost
        now = i * 0.2
        sent += 300
        lost += 60
        stats = SendStats(bytes_sent=sent * 1300, packets_sent=sent, packets_lost=lost, rtt_s=0.05)
        rung_now = quality.step(now, stats)
        if rung_now is not None:
            changes.append(rung_now)
    assert changes, "loss never lowered the rung"
    assert encoder.get_property("bitrate") < 1500
    assert len(changes) <= 4  # each a keyframe: held apart by the controller, never a storm
    caps = rung.get_property("caps").get_structure(0)
    assert caps.get_int("height")[1] == changes[-1].height


def test_clean_link_keeps_the_top_rung() -> None:
    encoder, rung = _elements()
    quality = StreamQuality(
        kind="srt",
        sink=None,
        encoder=encoder,
        rung_filter=rung,
        width=512,
        height=512,
        fps=25,
        bitrate=1_500_000,
    )
    for i in range(50):
        stats = SendStats(bytes_sent=i * 40_000, packets_sent=i * 30, rtt_s=0.01)
        assert quality.step(i * 0.2, stats) is None
    assert encoder.get_property("bitrate") == 1500
    assert quality.rung_changes == 0


def test_rtmp_backlog_is_a_send_queue() -> None:
    encoder, rung = _elements()
    quality = StreamQuality(
        kind="rtmp",
        sink=None,
        encoder=encoder,
        rung_filter=rung,
        width=512,
        height=512,
        fps=25,
        bitrate=1_500_000,
    )
    changes = 0
    for i in range(40):  # the server acknowledges less and less: a queue grows
        stats = SendStats(bytes_sent=i * 37_500, backlog_bytes=i * 20_000)
        changes += quality.step(i * 0.2, stats) is not None
    assert changes >= 1 and quality.controller.index > 0


def test_srt_stats_structure_parses() -> None:
    s = gst().Structure.from_string(
        "application/x-srt-statistics, packets-sent=(gint64)1659, packets-sent-lost=(int)7, "
        "packets-sent-dropped=(int)3, bytes-sent-total=(guint64)311892, rtt-ms=(double)12.5"
    )[0]
    stats = parse_srt_stats(s)
    assert stats == SendStats(bytes_sent=311892, packets_sent=1659, packets_lost=10, rtt_s=0.0125)
    with pytest.raises(ValueError, match="srt and rtmp"):
        StreamQuality(
            kind="hls",
            sink=None,
            encoder=None,
            rung_filter=None,
            width=2,
            height=2,
            fps=25,
            bitrate=10**6,
        )
