"""RetransmitLimiter: NACK answers within a budget, none while draining."""

import asyncio

import pytest
from aiortc import RTCPeerConnection

from media.congestion.retransmit import RetransmitLimiter


class FakeSender:
    kind = "video"

    def __init__(self) -> None:
        self.resent: list[int] = []

    async def _retransmit(self, sequence_number: int) -> None:
        self.resent.append(sequence_number)


async def nack(sender: FakeSender, seqs: range) -> None:
    for s in seqs:
        await sender._retransmit(s)


async def test_budget_is_a_share_of_the_bitrate() -> None:
    now = [10.0]
    sender = FakeSender()
    lim = RetransmitLimiter(
        sender,  # type: ignore[arg-type]
        lambda: 480_000,
        share=0.25,
        burst_s=0.2,
        time_fn=lambda: now[0],
    )
    # 0.25 * 480 kbps = 15 kB/s; the bucket holds 0.2 s of it = 3 kB = 2 packets
    await nack(sender, range(10))
    assert sender.resent == [0, 1]
    assert lim.stats.sent == 2 and lim.stats.dropped_budget == 8
    now[0] += 1.0  # a second refills the bucket (capped at its size)
    await nack(sender, range(10, 20))
    assert sender.resent == [0, 1, 10, 11]
    # over a long run the rate is the share: 12.5 packets/s at 1200 B
    sent_before = lim.stats.sent
    for _ in range(100):
        now[0] += 0.04
        await nack(sender, range(1))
    assert lim.stats.sent - sent_before == pytest.approx(50, abs=2)


async def test_nothing_is_resent_while_draining() -> None:
    now = [0.0]
    sender = FakeSender()
    lim = RetransmitLimiter(sender, lambda: 2_000_000, time_fn=lambda: now[0])  # type: ignore[arg-type]
    lim.pause(1.0)
    now[0] += 0.5
    await nack(sender, range(5))
    assert sender.resent == [] and lim.stats.dropped_paused == 5
    now[0] += 0.6  # the pause emptied the bucket; it refills at the budget rate
    await nack(sender, range(5, 7))
    assert sender.resent == [5, 6]
    with pytest.raises(ValueError):
        lim.pause(9)
    lim.pause(1.0)
    lim.resume()  # the queue probe saw the bottleneck empty
    now[0] += 0.6  # the bucket refills from where the pause emptied it
    await nack(sender, range(7, 9))
    assert sender.resent == [5, 6, 7, 8] and lim.stats.dropped_paused == 5


async def test_wraps_a_real_sender_only() -> None:
    pc = RTCPeerConnection()
    try:
        video = pc.addTransceiver("video").sender
        audio = pc.addTransceiver("audio").sender
        with pytest.raises(ValueError, match="video"):
            RetransmitLimiter(audio, lambda: 1e6)
        other = pc.addTransceiver("video").sender
        lim = RetransmitLimiter(video, lambda: 1e6)
        await video._retransmit(1)  # nothing in the history: a no-op, but counted
        assert lim.stats.sent == 1
        assert "_retransmit" not in vars(other)  # the other sender is untouched
    finally:
        await pc.close()
    await asyncio.sleep(0)
