"""The kiosk page, framed by embed.js into a third-party page on another origin."""

from __future__ import annotations

import statistics
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.browser.conftest import EMBED_KEY, QUESTION
from tests.browser.harness import sample_video
from tests.browser.test_call_page import faq_answer

pytestmark = pytest.mark.browser

IDLE_S = 6  # the kiosk ends a call after this long without speech

HOST_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Northwind Goods · help</title>
  <style>
    body {{ margin: 0; font-family: sans-serif; background: #eee; }}
    #help {{ width: 420px; height: 560px; margin: 16px; border: 2px solid #333; }}
  </style>
</head>
<body>
  <h1>Northwind Goods</h1>
  <div id="help"></div>
  <script>
    window.events = [];
    for (const type of ["ready", "phase", "connection", "state", "transcript", "reply_text",
                        "mic", "failure", "ended"]) {{
      document.addEventListener(`avatar-rtc:${{type}}`,
                                (e) => window.events.push({{ type, detail: e.detail }}));
    }}
  </script>
  <script src="{server}/static/embed.js" data-key="{key}" data-avatar="astronaut"
          data-lang="en" data-idle="{idle}" data-target="#help" data-mode="{mode}"></script>
</body>
</html>
"""
AGENT = "document.querySelector('avatar-rtc-agent').shadowRoot"


@pytest.fixture
async def host_page(server: str, host_port: int) -> AsyncIterator[str]:
    """A third-party page (another origin: another port) that embeds the avatar:
    ``/inline`` (the default mode, with the embed key) and ``/frame`` (iframe mode)."""

    async def page(request: web.Request) -> web.Response:
        mode = request.match_info["mode"]
        key = EMBED_KEY if mode == "inline" else ""
        html = HOST_PAGE.format(server=server, idle=IDLE_S, mode=mode, key=key)
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{mode:inline|frame}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", host_port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{host_port}/"
    finally:
        await runner.cleanup()


async def kiosk_frame(page: Any) -> Any:
    for _ in range(100):
        for frame in page.frames:
            if "/static/kiosk.html" in frame.url:
                await frame.wait_for_load_state()
                return frame
        await page.wait_for_timeout(100)
    raise AssertionError(f"no kiosk frame among {[f.url for f in page.frames]}")


async def host_events(page: Any, type_: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = await page.evaluate(
        "(t) => window.events.filter((e) => e.type === t).map((e) => e.detail)", type_
    )
    return events


async def test_inline_embed_with_key_answers_and_ends_after_silence(
    talking_browser: Any, server: str, host_page: str, artifacts: Path
) -> None:
    expected = faq_answer(QUESTION)
    page = await talking_browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(host_page + "inline")
    assert not page.url.startswith(server)  # the host page really is another origin
    await page.wait_for_function("window.events.some((e) => e.type === 'ready')")

    # Sized by the host page: the agent fills the host's box, the kiosk fills the agent.
    agent_box = await page.locator("avatar-rtc-agent").bounding_box()
    kiosk_box = await page.locator("avatar-rtc-agent .kiosk").bounding_box()
    assert agent_box and kiosk_box
    assert abs(agent_box["width"] - 420) <= 1 and abs(agent_box["height"] - 560) <= 1
    assert kiosk_box == agent_box

    # Idle: the attract loop runs, the microphone is off.
    attract = page.locator("avatar-rtc-agent [data-ref=attract]")
    await attract.wait_for(state="visible")
    first_line = await page.locator("avatar-rtc-agent [data-ref=attractLine]").inner_text()
    await page.wait_for_function(
        f"(first) => {AGENT}.querySelector('[data-ref=attractLine]').textContent !== first",
        arg=first_line,
        timeout=5_000,
    )
    assert await page.locator("avatar-rtc-agent [data-ref=mic]").is_hidden()
    await page.screenshot(path=str(artifacts / "embed-attract.png"))

    # A touch anywhere on the attract screen starts the call, with the page's embed key.
    async with page.expect_response(lambda r: r.url == server + "/session") as issued:
        await attract.click(position={"x": 20, "y": 20})
    assert (await issued.value).status == 200
    await page.wait_for_function(
        f"{AGENT}.querySelector('[data-ref=mic]').dataset.active === 'true'"
        f" && !{AGENT}.querySelector('[data-ref=mic]').hidden"
    )
    await page.wait_for_function(
        f"(want) => [...{AGENT}.querySelectorAll('.caption.agent .text')].some("
        "  (el) => el.textContent.replace(/\\s+/g, ' ').trim() === want)",
        arg=expected,
        timeout=40_000,
    )
    samples = await sample_video(page, "avatar-rtc-agent >>> video", count=6, interval_ms=120)
    assert statistics.mean(s["mean"] for s in samples) > 30, samples
    assert samples[-1]["time"] > samples[0]["time"]
    await page.screenshot(path=str(artifacts / "embed-answered.png"))

    # The host page heard about the call through the element's DOM events.
    replies = " ".join(" ".join(d["text"].split()) for d in await host_events(page, "reply_text"))
    assert expected in replies
    assert {"active": True} in await host_events(page, "mic")
    assert any("opening hours" in d["text"].lower() for d in await host_events(page, "transcript"))

    # Nobody speaks any more: the kiosk warns, hangs up, turns the mic off, attracts again.
    countdown = page.locator("avatar-rtc-agent [data-ref=countdown]")
    await countdown.wait_for(state="visible", timeout=(IDLE_S + 25) * 1000)
    await page.screenshot(path=str(artifacts / "embed-countdown.png"))
    await page.wait_for_function(
        "window.events.some((e) => e.type === 'ended')", timeout=(IDLE_S + 5) * 1000
    )
    await page.wait_for_function(f"{AGENT}.querySelector('[data-ref=mic]').hidden")
    assert {"active": False} in await host_events(page, "mic")
    await attract.wait_for(state="visible", timeout=10_000)
    assert await page.locator("avatar-rtc-agent .caption").count() == 0  # nothing left
    assert errors == []


async def test_frame_embed_runs_the_kiosk_page_in_an_iframe(
    quiet_browser: Any, server: str, host_page: str, artifacts: Path
) -> None:
    page = await quiet_browser.new_page()
    await page.goto(host_page + "frame")
    frame = await kiosk_frame(page)
    assert frame.url.startswith(server + "/static/kiosk.html?")
    agent_box = await page.locator("avatar-rtc-agent").bounding_box()
    frame_box = await page.locator("avatar-rtc-agent iframe").bounding_box()
    assert agent_box and frame_box and frame_box == agent_box
    assert abs(agent_box["width"] - 420) <= 1 and abs(agent_box["height"] - 560) <= 1
    await page.wait_for_function("window.events.some((e) => e.type === 'ready')")

    # The host page starts the call through the element; the kiosk page in the frame runs it.
    await page.evaluate("document.querySelector('avatar-rtc-agent').start()")
    await frame.wait_for_function(
        "!document.querySelector('[data-ref=mic]').hidden"
        " && document.querySelector('.kiosk').dataset.phase === 'call'"
    )
    await page.wait_for_function(
        "window.events.some((e) => e.type === 'connection' && e.detail.state === 'connected')"
    )
    await frame.wait_for_function(
        "document.querySelector('video').dataset.firstFrame === 'true'", timeout=10_000
    )
    await page.screenshot(path=str(artifacts / "embed-frame.png"))
    await page.evaluate("document.querySelector('avatar-rtc-agent').end()")
    await frame.wait_for_function("document.querySelector('[data-ref=mic]').hidden")
    assert {"active": False} in await host_events(page, "mic")
