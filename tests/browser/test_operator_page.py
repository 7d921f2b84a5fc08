"""The operator console page in chromium, against the server in-process with fake stages: a
caller (aiortc) asks for a person, the operator signs in, takes over, types, hands back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from inference.asr import ScriptedAsr, ScriptedAsrOptions
from inference.avatar import AvatarStore
from inference.dialogue import ScriptedDialogue, ScriptedDialogueOptions
from inference.render.warp import WarpOptions
from inference.tts import FakeTts, FakeTtsOptions
from signaling.client.loadgen import ProbeCall, ProbeOptions
from signaling.config import Settings
from signaling.server.app import create_app
from signaling.stages.services import Services, WarpRendererFactory

pytestmark = pytest.mark.browser

KEY = "operator-key-0123456789"


@pytest.fixture
async def console_server(tmp_path: Path) -> AsyncIterator[str]:
    services = Services(
        asr=ScriptedAsr(ScriptedAsrOptions(transcripts=("hello",))),
        dialogue=ScriptedDialogue(ScriptedDialogueOptions(replies=("We open at nine.",))),
        tts=FakeTts(FakeTtsOptions()),
        avatars=AvatarStore(tmp_path / "avatars"),
        renderers=WarpRendererFactory(WarpOptions(output_long_side=256, seed=1)),
    )
    services.avatar("astronaut")
    settings = Settings(
        host="127.0.0.1",
        port=0,
        access={"operator_keys": [KEY], "turns_per_s": 50, "turn_burst": 50},
        records={"enabled": False},
        handoff={"asks": 1},  # the first request for a person hands off
    )
    server = TestServer(create_app(settings, services=services), host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


async def test_operator_takes_over_types_and_hands_back(
    quiet_browser: Any, console_server: str
) -> None:
    url = console_server
    page = await quiet_browser.new_page()
    await page.goto(f"{url}/operator#key={KEY}&name=Ann")
    await page.wait_for_selector("#connection[data-state=connected]")
    assert "Ann" in await page.text_content("#connection")
    async with ProbeCall(ProbeOptions(url=url, timeout_s=20)) as call:
        await call.wait_connected()
        await call.wait_event("state", state="listening")
        await call.send({"type": "text", "text": "Can I talk to a human?"})
        await call.wait_event("handoff", state="waiting")
        await page.wait_for_selector(f"#queue button[data-call-id='{call.session_id}']")
        assert not await page.is_hidden("#alert")
        await page.click(f"#queue button[data-call-id='{call.session_id}']")
        await page.wait_for_selector("#transcript li[data-who=caller]")
        await page.click("#take")
        await call.wait_event("handoff", state="connected")
        await page.wait_for_selector("#say-text:not([disabled])")
        await page.fill("#say-text", "Hi, Ann here. How can I help?")
        await page.press("#say-text", "Enter")
        await call.wait_event("reply_text", text="Hi, Ann here. How can I help?")
        await page.wait_for_selector("#transcript li[data-who=operator]")
        await call.send({"type": "text", "text": "My parcel is lost."})
        await page.wait_for_function(
            "() => document.querySelector('#transcript').textContent.includes('parcel is lost')"
        )
        await page.click("#hand-back")
        await call.wait_event("handoff", state="returned")
        await page.wait_for_selector("#say-text[disabled]")
        assert "nine" in await call.ask("When do you open?")
    await page.wait_for_function("() => document.querySelectorAll('#calls li').length === 0")
