"""Avatar names and avatar folders over HTTP: bad ones get a clear 400, never a 500."""

from __future__ import annotations

import json
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from inference.avatar import AvatarStore
from signaling.config import Settings
from signaling.server.app import STATE, create_app
from signaling.stages.services import Services

Serve = Callable[[web.Application], Awaitable[str]]
# Enough for the offer parser; the avatar is looked up before the SDP is used.
SDP = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 AA:BB\r\n"


@pytest.fixture
def store_with_damage(avatars_root: Path, tmp_path: Path) -> AvatarStore:
    """The astronaut, a copy of it, one with a bad meta.json field, one with bad arrays,
    and folders whose names are not avatar names."""
    source = avatars_root / "astronaut"
    for name in ("astronaut", "alice", "badfield", "badarrays", "_x", "café"):
        shutil.copytree(source, tmp_path / name)
    meta = json.loads((tmp_path / "badfield" / "meta.json").read_text())
    (tmp_path / "badfield" / "meta.json").write_text(json.dumps({**meta, "num_frames": "two"}))
    (tmp_path / "badarrays" / "arrays.npz").write_bytes(b"PK\x03\x04 not a zip")
    return AvatarStore(tmp_path)


@pytest.fixture
def app(
    settings: Settings, fake_services: Services, store_with_damage: AvatarStore
) -> web.Application:
    services = replace(fake_services, avatars=store_with_damage, _loaded={})
    return create_app(settings, services=services)


async def test_avatars_lists_the_good_ones_despite_a_bad_folder(
    app: web.Application, serve: Serve
) -> None:
    url = await serve(app)
    async with ClientSession() as http:
        for _ in range(2):  # every page load, not only the first
            async with http.get(url + "/avatars") as r:
                assert r.status == 200
                body = await r.json()
            assert body == {"avatars": ["alice", "astronaut", "badarrays"], "default": "astronaut"}


@pytest.mark.parametrize(
    ("avatar", "reason"),
    [
        ("_x", "must be 1-64 characters"),
        ("-rf", "must be 1-64 characters"),
        ("café", "must be 1-64 characters"),
        ("ｆｕｌｌ", "must be 1-64 characters"),  # full-width letters
        ("ghost", "unknown avatar 'ghost'"),
        ("badfield", "avatar 'badfield' is unavailable"),
        ("badarrays", "avatar 'badarrays' is unavailable"),
    ],
)
async def test_offer_with_a_bad_avatar_is_a_400(
    app: web.Application, serve: Serve, avatar: str, reason: str
) -> None:
    url = await serve(app)
    async with ClientSession() as http:
        offer = {"sdp": SDP, "type": "offer", "avatar": avatar}
        async with http.post(url + "/offer", json=offer) as r:
            assert r.status == 400, await r.text()
            error = (await r.json())["error"]
    assert reason in error
    assert "/" not in error  # no server path in the answer
    assert app[STATE].sessions == {}
