"""``/health/ready`` and ``/health/live`` report a renderer factory that can no longer render
(hung GPUs)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from aiohttp import ClientSession, web

from inference.avatar.model import PreparedAvatar
from inference.render.base import Renderer
from signaling.config import Settings
from signaling.server.app import create_app
from signaling.stages.services import RendererFactory, Services


class SwitchableFactory:
    """Wraps a factory; ``healthy`` is what the test sets (the MuseTalk factory's reports
    whether any GPU's scheduler still renders)."""

    def __init__(self, inner: RendererFactory) -> None:
        self.inner = inner
        self.healthy = True

    def make(self, avatar: PreparedAvatar, *, session: str) -> Renderer:
        return self.inner.make(avatar, session=session)

    def release(self, session: str) -> None:
        self.inner.release(session)


async def test_ready_reports_a_stalled_renderer(
    settings: Settings,
    fake_services: Services,
    serve: Callable[[web.Application], Awaitable[str]],
) -> None:
    factory = SwitchableFactory(fake_services.renderers)
    services = dataclasses.replace(fake_services, renderers=factory)
    url = await serve(create_app(settings, services=services))
    async with ClientSession() as http:
        async with http.get(url + "/health/ready") as r:
            assert r.status == 200
        factory.healthy = False
        async with http.get(url + "/health/ready") as r:
            assert r.status == 503
            assert (await r.json())["status"] == "render_stalled"
        async with http.get(url + "/health/live") as r:  # only a restart frees the GPUs
            assert r.status == 503
            assert (await r.json())["status"] == "render_stalled"
