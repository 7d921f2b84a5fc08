"""A short soak: connect / talk / hang up, with RSS, fds, threads and tasks checked for growth.

``scripts/soak.py`` runs the long version (100 cycles) and prints the numbers.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from aiohttp import web

from signaling.client.loadgen import soak
from signaling.config import Settings
from signaling.server.app import STATE, create_app
from signaling.stages.services import Services

Serve = Callable[[web.Application], Awaitable[str]]
WARMUP = 2  # cycles before the baseline (thread pools, codec and render caches fill up)
CYCLES = 10


async def test_short_soak_does_not_grow(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    app = create_app(settings, services=fake_services)
    url = await serve(app)
    state = app[STATE]
    samples = await soak(url, CYCLES, active=lambda: len(state.sessions))
    base, last = samples[WARMUP], samples[-1]
    growth = {k: round(last[k] - base[k], 1) for k in base}
    print(f"soak growth over {CYCLES - WARMUP} cycles: {growth}")
    assert not state.sessions
    assert growth["tasks"] <= 1, growth
    assert growth["threads"] - growth["pool_threads"] <= 0, growth  # no stray threads
    assert last["pool_threads"] <= min(32, (os.cpu_count() or 1) + 4), last  # executor cap
    assert growth["fds"] <= 2, growth
    assert growth["rss_mb"] <= 40, growth
