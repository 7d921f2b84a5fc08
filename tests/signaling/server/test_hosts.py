"""The Host check: a page of another site rebound to this server's address is refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from signaling.config import ConfigError, Settings, load_settings
from signaling.server.app import create_app
from signaling.server.auth import HostPolicy, normalize_host_name
from signaling.stages.services import Services

Serve = Callable[[web.Application], Awaitable[str]]
SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=fingerprint:sha-256 AA:BB\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
)


def site(name: str, url: str) -> dict[str, str]:
    """The headers a page at ``http://name:PORT`` sends when ``name`` resolves to us."""
    port = url.rsplit(":", 1)[1]
    return {"Host": f"{name}:{port}", "Origin": f"http://{name}:{port}"}


async def test_a_rebound_name_gets_nothing(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    url = await serve(create_app(settings, services=fake_services))
    evil = site("evil.example", url)
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/session", headers=evil) as r:
            assert r.status == 421
            assert "access.public_hosts" in (await r.json())["error"]
        async with http.post(url + "/offer", json={"sdp": SDP, "type": "offer"}, headers=evil) as r:
            assert r.status == 421
        for path in ("/ws?session=x&token=y", "/health/ready", "/metrics", "/avatars", "/"):
            async with http.get(url + path, headers=evil) as r:
                assert r.status == 421, path
        for name in ("localhost", "127.0.0.1"):  # the server's own names still work
            async with http.post(url + "/session", headers=site(name, url)) as r:
                assert r.status == 200, name


async def test_public_hosts_are_answered(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    access = settings.access.model_copy(update={"public_hosts": ["avatar.example"]})
    app = create_app(settings.model_copy(update={"access": access}), services=fake_services)
    url = await serve(app)
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/session", headers=site("avatar.example", url)) as r:
            assert r.status == 200
        async with http.post(url + "/session", headers=site("evil.example", url)) as r:
            assert r.status == 421


def test_host_policy() -> None:
    policy = HostPolicy(bind_host="0.0.0.0", public_hosts=frozenset({"avatar.example"}))
    for ok in (
        None,
        "127.0.0.1:8080",
        "[::1]:8080",
        "10.1.2.3",
        "localhost",
        "LOCALHOST.:80",
        "app.localhost",
        "Avatar.Example",
        "avatar.example.:443",
    ):
        assert policy.allows(ok), ok
    for bad in ("evil.example", "avatar.example.evil.example", "[::1", "host:notaport", ""):
        assert not policy.allows(bad), bad
    assert HostPolicy(bind_host="kiosk-box").allows("kiosk-box:8080")
    assert HostPolicy(bind_host="127.0.0.1", public_hosts=frozenset({"*"})).allows("any.example")


def test_public_hosts_setting() -> None:
    assert normalize_host_name(" Avatar.Example. ") == "avatar.example"
    settings = load_settings(overrides={"access": {"public_hosts": ["Avatar.Example", "*"]}})
    assert settings.access.public_hosts == ["avatar.example", "*"]
    for bad in ("https://avatar.example", "avatar.example:443", "-x.example", "a b"):
        with pytest.raises(ConfigError, match="public_hosts"):
            load_settings(overrides={"access": {"public_hosts": [bad]}})
