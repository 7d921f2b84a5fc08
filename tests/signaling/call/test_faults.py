"""Fault containment: one call's failures never reach another; a dead renderer restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace

import numpy as np
import pytest
from aiohttp import web

from inference.avatar import PreparedAvatar
from inference.cache import CacheOptions, TieredCache
from inference.dialogue.base import Dialogue
from inference.render.base import Renderer, rate_follower, seeker
from inference.render.cached import CachedRenderer, CachedRendererOptions
from inference.types import ReplySentence, Transcript
from signaling.call.supervise import RestartPolicy, SupervisedRenderer
from signaling.client.loadgen import ProbeCall, ProbeOptions
from signaling.config import Settings
from signaling.server.app import STATE, create_app
from signaling.stages.services import RendererFactory, Services

Serve = Callable[[web.Application], Awaitable[str]]


class ExplodingDialogue:
    """The shared dialogue, except that any question with "boom" raises."""

    def __init__(self, inner: Dialogue) -> None:
        self._inner = inner

    def greeting(self, language: str = "en") -> ReplySentence:
        return self._inner.greeting(language)

    async def reply(self, transcript: Transcript) -> AsyncIterator[ReplySentence]:
        if "boom" in transcript.text:
            raise RuntimeError("dialogue exploded")
        async for sentence in self._inner.reply(transcript):
            yield sentence


class DyingRenderer:
    """A renderer whose worker dies after its first batch (once)."""

    def __init__(self, inner: Renderer) -> None:
        self._inner = inner
        self.fps = inner.fps
        self.died = False

    @property
    def frame_size(self) -> tuple[int, int]:
        return self._inner.frame_size

    def set_output_height(self, height: int) -> None:
        self._inner.set_output_height(height)

    def idle_frames(self) -> Sequence[np.ndarray]:
        return self._inner.idle_frames()

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        async for batch in self._inner.render(audio_16k):
            yield batch
            if not self.died:
                self.died = True
                raise RuntimeError("render worker died")


class SometimesDyingFactory:
    """Makes the next ``dying_next`` renderers dying ones; otherwise the real factory's."""

    def __init__(self, inner: RendererFactory) -> None:
        self.inner = inner
        self.dying_next = 0
        self.made = 0

    def make(self, avatar: PreparedAvatar, *, session: str) -> Renderer:
        self.made += 1
        renderer = self.inner.make(avatar, session=session)
        if self.dying_next > 0:
            self.dying_next -= 1
            return DyingRenderer(renderer)
        return renderer

    def release(self, session: str) -> None:
        self.inner.release(session)


def errors(call: ProbeCall) -> list[str]:
    return [str(e["reason"]) for e in call.events if e.get("type") == "error"]


async def test_a_failing_stage_in_one_call_never_reaches_another(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    services = replace(fake_services, dialogue=ExplodingDialogue(fake_services.dialogue))
    app = create_app(settings, services=services)
    url = await serve(app)
    async with (
        ProbeCall(ProbeOptions(url=url, timeout_s=20)) as a,
        ProbeCall(ProbeOptions(url=url, timeout_s=20)) as b,
    ):
        await asyncio.gather(a.wait_connected(), b.wait_connected())
        start = len(a.events)
        await a.send({"type": "text", "text": "boom"})
        b_reply = asyncio.ensure_future(b.ask("When are you open?"))
        await a.wait_event("error", start=start)
        assert "nine to five" in await b_reply
        assert any("reply failed" in r for r in errors(a))
        assert not errors(b)
        # The failed call lives on and answers the next question.
        assert "nine to five" in await a.ask("When are you open?")
        assert set(app[STATE].sessions) == {a.session_id, b.session_id}


async def test_a_dead_renderer_restarts_and_the_call_goes_on(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    factory = SometimesDyingFactory(fake_services.renderers)
    services = replace(fake_services, renderers=factory)
    app = create_app(settings, services=services)
    url = await serve(app)
    factory.dying_next = 1
    async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as a:
        factory.dying_next = 0
        async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as b:
            await asyncio.gather(a.wait_connected(), b.wait_connected())
            await asyncio.sleep(0.3)
            frames = len(a.video_times)
            replies = await asyncio.gather(a.ask("When are you open?"), b.ask("Hours?"))
            # The voice played over the idle loop: the reply arrived, video never stopped.
            assert all("nine to five" in r for r in replies)
            assert len(a.video_times) - frames > 25
            assert any("renderer failed" in r for r in errors(a))
            assert not errors(b)
            supervisor = app[STATE].sessions[a.session_id].supervisor
            for _ in range(50):
                if supervisor.restarts:
                    break
                await asyncio.sleep(0.05)
            assert supervisor.restarts == 1 and supervisor.healthy
            start = len(a.events)
            assert "nine to five" in await a.ask("Again?")
            assert not [e for e in a.events[start:] if e.get("type") == "error"]
            assert supervisor.failures == 1


class _Fake:
    fps = 25
    frame_size = (8, 8)

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def set_output_height(self, height: int) -> None:
        pass

    def idle_frames(self) -> Sequence[np.ndarray]:
        return [np.full((8, 8, 3), 7, np.uint8)]

    async def render(self, audio_16k: np.ndarray) -> AsyncIterator[list[np.ndarray]]:
        yield [np.zeros((8, 8, 3), np.uint8)] * 5
        if self.fail:
            raise RuntimeError("boom")
        yield [np.zeros((8, 8, 3), np.uint8)] * 20


async def _frames(r: SupervisedRenderer) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    async for batch in r.render(np.zeros(16000, np.int16)):
        out += batch
    return out


async def test_supervised_renderer_fills_with_idle_frames_and_caps_restarts() -> None:
    made: list[_Fake] = []

    async def restart() -> Renderer:
        made.append(_Fake(fail=True))
        return made[-1]

    failures: list[BaseException] = []
    r = SupervisedRenderer(
        _Fake(fail=True),
        restart=restart,
        policy=RestartPolicy(max_restarts=2, window_s=60, backoff_s=0.0),
        on_failure=failures.append,
    )
    frames = await _frames(r)
    assert len(frames) == 25  # 5 rendered + 20 idle: the sentence is complete
    assert int(frames[-1][0, 0, 0]) == 7
    for _ in range(3):
        await asyncio.sleep(0.01)
        await _frames(r)
    await asyncio.sleep(0.05)
    assert r.restarts == 2 and len(made) == 2  # capped: stays on the idle loop
    assert not r.healthy
    assert len(await _frames(r)) == 25
    assert len(failures) == 3
    await r.close()


def test_restart_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="max_restarts"):
        RestartPolicy(max_restarts=-1)


class _Following(_Fake):
    def __init__(self, fail: bool) -> None:
        super().__init__(fail)
        self.render_fps = 25

    def set_render_fps(self, fps: int) -> None:
        self.render_fps = fps


async def test_supervised_renderer_passes_the_render_rate_on_also_after_a_restart() -> None:
    made: list[_Following] = []

    async def restart() -> Renderer:
        made.append(_Following(fail=False))
        return made[-1]

    first = _Following(fail=True)
    r = SupervisedRenderer(
        first, restart=restart, policy=RestartPolicy(max_restarts=1, window_s=60, backoff_s=0.0)
    )
    follower = rate_follower(r)
    assert follower is not None and follower.render_fps == 25
    follower.set_render_fps(10)  # a low quality rung
    assert first.render_fps == 10 and follower.render_fps == 10
    await _frames(r)  # fails: restarted in the background
    for _ in range(50):
        if made:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)
    assert made and made[0].render_fps == 10
    await r.close()


class _Seeking(_Fake):
    def __init__(self, fail: bool) -> None:
        super().__init__(fail)
        self.seeks: list[int] = []

    def seek(self, step: int) -> None:
        self.seeks.append(step)


async def test_supervised_renderer_claims_only_what_the_renderer_it_wraps_can() -> None:
    async def restart() -> Renderer:
        return _Fake(fail=False)

    plain = SupervisedRenderer(_Fake(fail=False), restart=restart)
    assert seeker(plain) is None and rate_follower(plain) is None
    cache = TieredCache(CacheOptions())
    following = _Following(fail=False)
    cached = CachedRenderer(following, cache, CachedRendererOptions(avatar_id="a", renderer_id="r"))
    over_cache = SupervisedRenderer(cached, restart=restart)
    assert seeker(over_cache) is None
    follower = rate_follower(over_cache)
    assert follower is not None
    follower.set_render_fps(10)  # through the supervisor and the cache
    assert following.render_fps == 10


async def test_supervised_renderer_seeks_the_renderer_running_now() -> None:
    made: list[_Seeking] = []

    async def restart() -> Renderer:
        made.append(_Seeking(fail=False))
        return made[-1]

    first = _Seeking(fail=True)
    r = SupervisedRenderer(
        first, restart=restart, policy=RestartPolicy(max_restarts=1, window_s=60, backoff_s=0.05)
    )
    timeline = seeker(r)
    assert timeline is not None
    timeline.seek(7)
    assert first.seeks == [7]
    await _frames(r)  # fails: the idle loop stands in until the restart, without a timeline
    assert not r.healthy and seeker(r) is None
    for _ in range(100):
        if r.healthy:
            break
        await asyncio.sleep(0.01)
    timeline = seeker(r)
    assert timeline is not None
    timeline.seek(9)
    assert made[0].seeks == [9] and first.seeks == [7]
    await r.close()
