"""In-process servers on 127.0.0.1 with fake ASR/dialogue/TTS and the real warp renderer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from inference.asr import ScriptedAsr, ScriptedAsrOptions
from inference.avatar import AvatarStore
from inference.dialogue import ScriptedDialogue, ScriptedDialogueOptions
from inference.render.warp import WarpOptions
from inference.tts import FakeTts, FakeTtsOptions
from signaling.config import Settings
from signaling.stages.services import Services, WarpRendererFactory


@pytest.fixture(autouse=True)
def _data_dir_in_tmp(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Servers built by these tests keep their files (call records) in a temporary folder."""
    monkeypatch.setenv("AVATAR_RTC_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="session")
def avatars_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("avatars")


@pytest.fixture
def fake_services(avatars_root: Path) -> Services:
    services = Services(
        asr=ScriptedAsr(ScriptedAsrOptions(transcripts=("What are your opening hours?",))),
        dialogue=ScriptedDialogue(
            ScriptedDialogueOptions(
                replies=("We are open from nine to five. See you soon.",),
                greeting_text="Hi.",
            )
        ),
        tts=FakeTts(FakeTtsOptions()),
        avatars=AvatarStore(avatars_root),
        renderers=WarpRendererFactory(WarpOptions(output_long_side=256, seed=1)),
    )
    services.avatar("astronaut")
    return services


@pytest.fixture
def settings() -> Settings:
    return Settings(host="127.0.0.1", port=0, max_sessions=2, heartbeat_timeout_s=5.0)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application], Awaitable[str]]]:
    """``url = await serve(app)``: the app on 127.0.0.1, closed after the test."""
    servers: list[TestServer] = []

    async def start(app: web.Application) -> str:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in reversed(servers):
        await server.close()
