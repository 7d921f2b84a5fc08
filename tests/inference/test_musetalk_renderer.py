"""MuseTalkRenderer through the real scheduler and engine (tiny models, CPU)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from musetalk_helpers import engine, make_avatar, speech_like, tiny_models

from inference.render.base import FrameRateFollower, Renderer
from inference.render.musetalk import (
    MuseTalkRenderer,
    MuseTalkService,
    RendererOptions,
    ServiceOptions,
)
from inference.render.scheduler import RenderScheduler, SchedulerOptions


@pytest.fixture()
def scheduler() -> Iterator[RenderScheduler]:
    # the tiny CPU engine is slower than real time: no decimation in these tests
    sched = RenderScheduler(engine(), SchedulerOptions(max_batch=16, max_stride=1))
    sched.start(warmup=False)
    yield sched
    sched.close()


async def _collect(it: AsyncIterator[list[np.ndarray]]) -> list[np.ndarray]:
    return [f async for batch in it for f in batch]


async def test_render_yields_every_frame_in_small_batches(scheduler: RenderScheduler) -> None:
    r = MuseTalkRenderer(make_avatar(), engine(), scheduler, session="call")
    protocol_view: Renderer = r  # mypy checks that MuseTalkRenderer implements Renderer
    sizes = [len(b) async for b in protocol_view.render(speech_like(0.5))]
    assert sum(sizes) == 13 and max(sizes) <= 5
    assert r.frame_size == (160, 128)
    r.close()


async def test_output_height_and_idle_frames(scheduler: RenderScheduler) -> None:
    r = MuseTalkRenderer(
        make_avatar(),
        engine(),
        scheduler,
        session="call",
        options=RendererOptions(output_height=64),
    )
    assert r.frame_size == (80, 64)
    frames = await _collect(r.render(speech_like(0.2)))
    assert len(frames) == 5 and frames[0].shape == (64, 80, 3)
    r.set_output_height(96)
    assert r.frame_size == (120, 96)
    frames = await _collect(r.render(speech_like(0.12)))
    assert frames[0].shape == (96, 120, 3)
    idle = r.idle_frames()
    assert len(idle) == 3 and idle[0].shape == (96, 120, 3)
    with pytest.raises(ValueError):
        r.set_output_height(4)
    with pytest.raises(ValueError, match="int16"):
        await _collect(r.render(np.zeros(100, np.float32)))
    r.close()


async def test_stream_equals_whole(scheduler: RenderScheduler) -> None:
    audio = speech_like(0.6, seed=5)
    opts = RendererOptions(carry_context=False)
    whole = MuseTalkRenderer(make_avatar(), engine(), scheduler, session="w", options=opts)
    streamed = MuseTalkRenderer(make_avatar(), engine(), scheduler, session="s", options=opts)
    a = await _collect(whole.render(audio))

    async def chunks() -> AsyncIterator[np.ndarray]:
        for start in range(0, len(audio), 1700):
            yield audio[start : start + 1700]

    b = await _collect(streamed.render_stream(chunks()))
    assert len(a) == len(b) == 15
    for x, y in zip(a, b, strict=True):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 1
    whole.close()
    streamed.close()


async def test_clear_cancels_pending_frames(scheduler: RenderScheduler) -> None:
    r = MuseTalkRenderer(make_avatar(), engine(), scheduler, session="c")
    it = r.render(speech_like(1.0))
    first = await it.__anext__()
    assert len(first) == 5
    r.clear()
    await it.aclose()
    assert not r._outstanding
    frames = await _collect(r.render(speech_like(0.2)))
    assert len(frames) == 5
    r.close()


async def test_service_on_cpu() -> None:
    opts = ServiceOptions(devices=("cpu",), compile=False, max_batch=8)
    service = MuseTalkService(tiny_models(), opts)
    avatar = make_avatar(name="svc")
    service.add_avatar(avatar)
    with pytest.raises(RuntimeError, match="start"):
        service.renderer(avatar, session="x")
    service.start(warmup=True)
    r = service.renderer(avatar, session="x")
    frames = await _collect(r.render(speech_like(0.16)))
    assert len(frames) == 4
    service.release("x")
    service.close()


async def test_a_lower_render_fps_submits_fewer_frames(scheduler: RenderScheduler) -> None:
    """A low quality rung: every output frame is still there, a third of them rendered."""
    r = MuseTalkRenderer(make_avatar(), engine(), scheduler, session="low")
    assert isinstance(r, FrameRateFollower) and r.render_fps == 25
    before = scheduler.stats.frames
    full = await _collect(r.render(speech_like(0.6)))
    assert scheduler.stats.frames - before == 15 == len(full)
    r.set_render_fps(10)
    assert r.render_fps == 10
    before = scheduler.stats.frames
    low = await _collect(r.render(speech_like(0.6)))
    rendered = scheduler.stats.frames - before
    assert len(low) == 15 and 5 <= rendered <= 7
    assert len({id(f) for f in low}) == rendered  # the others repeat rendered frames
    with pytest.raises(ValueError):
        r.set_render_fps(0)
    r.close()
