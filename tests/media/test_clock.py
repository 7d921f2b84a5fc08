import asyncio

import pytest

from media.clock import ManualClock, MediaClock


def test_now_counts_from_creation_with_injected_time() -> None:
    t = [100.0]
    clock = MediaClock(time_fn=lambda: t[0])
    assert clock.now() == 0.0
    t[0] = 101.25
    assert clock.now() == pytest.approx(1.25)


async def test_sleep_until_real_time() -> None:
    clock = MediaClock()
    await clock.sleep_until(0.05)
    assert clock.now() >= 0.05
    before = clock.now()
    await clock.sleep_until(0.0)  # in the past: returns at once
    assert clock.now() - before < 0.02


async def test_manual_clock_wakes_sleepers_in_order() -> None:
    clock = ManualClock()
    woke: list[str] = []

    async def sleeper(name: str, t: float) -> None:
        await clock.sleep_until(t)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper("b", 0.2)), asyncio.create_task(sleeper("a", 0.1))]
    await asyncio.sleep(0)
    assert clock.sleepers == 2
    clock.advance(0.15)
    await asyncio.sleep(0)
    assert woke == ["a"]
    clock.set(0.2)
    await asyncio.gather(*tasks)
    assert woke == ["a", "b"]
    with pytest.raises(ValueError, match="backwards"):
        clock.set(0.1)
    with pytest.raises(ValueError):
        clock.advance(-1)
