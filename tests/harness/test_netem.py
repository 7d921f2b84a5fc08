"""The impairment relay: delay, loss and the bandwidth cap, measured."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.harness.netem import Impairment, Link, UdpRelay, candidate_port, rewrite_candidates

pytestmark = pytest.mark.timeout(30)


def test_link_token_bucket_rate_and_queue_limit() -> None:
    link = Link(Impairment(rate_bps=80_000, burst_bytes=2000, queue_limit_s=0.5))
    # 100 packets of 1000 bytes at once: 2 leave on the burst, then one per 0.1 s
    times = [link.delivery_time(0.0, 1000) for _ in range(100)]
    sent = [t for t in times if t is not None]
    assert sent[:2] == [0.0, 0.0]
    assert sent[2] == pytest.approx(0.1)
    assert max(sent) <= 0.5 + 1e-9
    assert link.stats.queue_drops == 100 - len(sent) > 0
    # after the queue drains the bucket refills up to its depth
    assert link.delivery_time(10.0, 1000) == 10.0
    assert link.delivery_time(10.0, 1000) == 10.0
    assert link.delivery_time(10.0, 1000) == pytest.approx(10.1)


def test_link_loss_delay_and_jitter() -> None:
    link = Link(Impairment(delay_s=0.05, jitter_s=0.01, loss=0.2), seed=3)
    out = [link.delivery_time(1.0, 100) for _ in range(5000)]
    kept = [t for t in out if t is not None]
    assert 0.17 < 1 - len(kept) / len(out) < 0.23
    assert min(kept) >= 1.04 and max(kept) <= 1.06
    assert 1.049 < sum(kept) / len(kept) < 1.051


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss": 1.0}, "loss"),
        ({"delay_s": 0.01, "jitter_s": 0.02}, "jitter_s"),
        ({"rate_bps": 100}, "rate_bps"),
        ({"queue_limit_s": 0}, "queue_limit_s"),
    ],
)
def test_bad_impairments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Impairment(**kwargs)


class Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[float, bytes]] = []

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
        self.got.append((time.monotonic(), data))


async def _endpoint(loop: asyncio.AbstractEventLoop):  # type: ignore[no-untyped-def]
    t, p = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
    return t, p, t.get_extra_info("sockname")


@contextlib.asynccontextmanager
async def _relay_pair(seed: int) -> AsyncIterator[tuple[UdpRelay, Any, Any, Any, Any]]:
    """A started relay between two sinks: (relay, A's transport, A's sink, B's, B's)."""
    loop = asyncio.get_running_loop()
    relay = UdpRelay(seed=seed)
    await relay.start()
    ta, pa, addr_a = await _endpoint(loop)
    tb, pb, addr_b = await _endpoint(loop)
    relay.set_targets(a=addr_a, b=addr_b)
    try:
        yield relay, ta, pa, tb, pb
    finally:
        relay.close()
        ta.close()
        tb.close()


async def test_relay_delays_drops_and_caps_real_udp() -> None:
    async with _relay_pair(1) as (relay, ta, pa, tb, pb):
        # delay + loss, A -> B
        relay.impair(a_to_b=Impairment(delay_s=0.05, loss=0.1))
        sent_at = {}
        for i in range(300):
            sent_at[i] = time.monotonic()
            ta.sendto(i.to_bytes(4, "big"), ("127.0.0.1", relay.a_port))
            if i % 20 == 0:
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)
        delays = [t - sent_at[int.from_bytes(d, "big")] for t, d in pb.got]
        assert 0.85 * 300 > len(delays) * 0.85 > 0.8 * 0.85 * 300  # ~10 % lost
        assert min(delays) >= 0.049 and sorted(delays)[len(delays) // 2] < 0.07
        # the cap, B -> A: 100 kbps, 1 s of 1000-byte packets offered at ~400 kbps
        relay.impair(b_to_a=Impairment(rate_bps=100_000, burst_bytes=1500, queue_limit_s=0.3))
        t0 = time.monotonic()
        for _ in range(50):
            tb.sendto(b"x" * 1000, ("127.0.0.1", relay.b_port))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.4)
        arrivals = [t for t, _ in pa.got]
        rate = len(arrivals) * 8000 / (max(arrivals) - t0)
        assert 80_000 < rate < 115_000
        assert relay.b_to_a.stats.queue_drops > 0
        assert relay.b_to_a.stats.max_queue_s <= 0.3


def test_sdp_candidate_rewrite() -> None:
    sdp = (
        "v=0\r\nm=audio 5000 UDP/TLS/RTP/SAVPF 96\r\n"
        "a=candidate:abc 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"
        "m=video 5000 UDP/TLS/RTP/SAVPF 97\r\n"
        "a=candidate:abc 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"
    )
    assert candidate_port(sdp) == 5000
    out = rewrite_candidates(sdp, 6000)
    assert "5000" not in out and out.count(" 6000 ") == 4
    with pytest.raises(ValueError, match=r"no 127\.0\.0\.1"):
        candidate_port("v=0\r\n")


async def test_relay_keeps_the_order_when_the_loop_runs_late() -> None:
    """A FIFO link never reorders: a packet due at once still waits for the ones scheduled
    before it, also when a busy event loop runs their timers late (it once did not, and
    the bot's voice buffer counted the reordered voice as lost)."""
    async with _relay_pair(2) as (relay, ta, _pa, _tb, pb):
        relay.impair(a_to_b=Impairment(rate_bps=1_500_000, burst_bytes=1600))
        n = 0
        for _ in range(20):
            for _ in range(5):  # a burst over the bucket: a queue forms
                ta.sendto(n.to_bytes(4, "big") + bytes(800), ("127.0.0.1", relay.a_port))
                n += 1
            await asyncio.sleep(0.001)
            time.sleep(0.03)  # noqa: ASYNC251 (on purpose: the busy loop runs due timers late)
        await asyncio.sleep(0.5)
        got = [int.from_bytes(d[:4], "big") for _, d in pb.got]
        assert len(got) == n
        assert got == sorted(got)
