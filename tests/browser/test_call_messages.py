"""What the call page tells the caller when things go wrong, and the phone-sized layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}

_DENY_MIC = """
navigator.mediaDevices.getUserMedia = async () => {
  throw new DOMException("Permission denied", "NotAllowedError");
};
"""


async def test_busy_server_shows_retry_message(
    quiet_browser: Any, server: str, artifacts: Path
) -> None:
    page = await quiet_browser.new_page()

    async def busy(route: Any) -> None:
        await route.fulfill(
            status=503,
            headers={"Retry-After": "10", "Content-Type": "application/json"},
            body=json.dumps({"error": "server is busy: too many calls"}),
        )

    await page.route("**/offer", busy)
    await page.goto(server + "/")
    await page.click("#call")
    message = page.locator("#message-text")
    await message.wait_for(state="visible")
    assert await message.inner_text() == "All agents are busy. Try again in 10 s."
    await page.wait_for_function("!document.querySelector('#call').disabled")
    assert await page.locator("#connection").get_attribute("data-state") == "closed"
    assert not await page.locator("#mic-indicator").is_visible()
    await page.screenshot(path=str(artifacts / "call-busy.png"))


async def test_denied_microphone_still_lets_the_caller_type(
    quiet_browser: Any, server: str, artifacts: Path
) -> None:
    page = await quiet_browser.new_page()
    await page.add_init_script(_DENY_MIC)
    await page.goto(server + "/")
    await page.click("#call")
    await page.wait_for_function(
        "document.querySelector('#connection').dataset.state === 'connected'"
    )
    text = await page.locator("#message-text").inner_text()
    assert "Microphone access was denied" in text and "type" in text
    assert not await page.locator("#mic-indicator").is_visible()  # no mic: no privacy light
    await page.fill("#type-text", "Do you ship internationally?")
    await page.click("#send")
    await page.wait_for_function(
        "[...document.querySelectorAll('#captions .caption.agent .text')].some("
        "  (el) => /forty countries/.test(el.textContent))",
        timeout=20_000,
    )
    await page.screenshot(path=str(artifacts / "call-mic-denied.png"))


async def test_lost_connection_reconnects_on_a_phone_screen(
    quiet_browser: Any, server: str, artifacts: Path
) -> None:
    page = await quiet_browser.new_page()
    await page.set_viewport_size(PHONE)
    await page.goto(server + "/")
    # Phone-sized: nothing wider than the screen, every control on it and big enough to tap.
    overflow = await page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    for control in ("#call", "#interrupt", "#mute", "#hangup", "#avatar", "#language", "#mic"):
        box = await page.locator(control).bounding_box()
        assert box is not None, control
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (control, box)
        assert box["y"] + box["height"] <= PHONE["height"], (control, box)  # no scrolling
        assert box["height"] >= 40, (control, box)

    await page.click("#call")
    await page.wait_for_function(
        "document.querySelector('#connection').dataset.state === 'connected'"
    )
    first_session = await page.evaluate("window.avatarCall.session")
    await page.wait_for_function(
        "document.querySelector('#avatar-video').dataset.firstFrame === 'true'", timeout=10_000
    )
    await page.wait_for_timeout(300)
    await page.screenshot(path=str(artifacts / "call-phone.png"))

    # The control channel drops (as when a network goes away): the page says so and calls again.
    await page.evaluate("window.avatarCall.ws.close(4000, 'test drops the socket')")
    message = page.locator("#message-text")
    await message.wait_for(state="visible")
    assert "Connection lost" in await message.inner_text()
    await page.wait_for_function(
        "document.querySelector('#connection').dataset.state === 'connected'", timeout=15_000
    )
    # The server kept the call for a while: the page resumed the same conversation.
    assert await page.evaluate("window.avatarCall.session") == first_session
    await page.wait_for_function(
        "document.querySelector('#avatar-video').dataset.firstFrame === 'true'", timeout=10_000
    )
    assert await page.locator("#message").is_hidden()
    assert await page.locator("#mic-indicator").is_visible()

    # A second loss in a row is not retried blindly: the Reconnect button is offered.
    await page.evaluate("window.avatarCall.ws.close(4000, 'test drops the socket again')")
    reconnect = page.locator("#reconnect")
    await reconnect.wait_for(state="visible")
    await page.screenshot(path=str(artifacts / "call-lost.png"))
    await reconnect.click()
    await page.wait_for_function(
        "document.querySelector('#connection').dataset.state === 'connected'", timeout=15_000
    )
    assert await page.locator("#message").is_hidden()


async def test_settings_language_microphone_and_mute(quiet_browser: Any, server: str) -> None:
    page = await quiet_browser.new_page()
    await page.goto(server + "/")
    await page.select_option("#language", "zh")
    async with page.expect_request("**/offer") as offered:
        await page.click("#call")
    body = json.loads((await offered.value).post_data or "{}")
    assert body["language"] == "zh" and body["avatar"] == "astronaut"
    await page.wait_for_function(
        "document.querySelector('#connection').dataset.state === 'connected'"
    )
    # The greeting comes in Chinese, captioned as such.
    await page.wait_for_function(
        "[...document.querySelectorAll('#captions .caption.agent')].some("
        "  (li) => li.lang === 'zh' && /[\\u4e00-\\u9fff]/.test(li.textContent))",
        timeout=15_000,
    )
    # The microphone is captured with echo cancellation and noise suppression on.
    settings = await page.evaluate("window.avatarCall.mic.getAudioTracks()[0].getSettings()")
    assert settings["echoCancellation"] is True and settings["noiseSuppression"] is True

    # The picker lists the microphones (with labels, once allowed); choosing one swaps the
    # track being sent without a new call.
    await page.wait_for_function("document.querySelector('#mic').options.length > 2")
    choices = await page.evaluate(
        "[...document.querySelector('#mic').options].map((o) => [o.value, o.textContent])"
    )
    device, label = choices[-1]
    assert device and label
    session = await page.evaluate("window.avatarCall.session")
    await page.select_option("#mic", device)
    await page.wait_for_function(
        "(id) => window.avatarCall.pc.getSenders().some("
        "  (s) => s.track && s.track.getSettings().deviceId === id)",
        arg=device,
    )
    assert await page.evaluate("window.avatarCall.session") == session
    indicator = page.locator("#mic-indicator")
    assert await indicator.is_visible()
    assert label in (await indicator.get_attribute("title") or "")

    # Muted: the track is disabled and the privacy indicator goes off; unmuted: back on.
    await page.click("#mute")
    await indicator.wait_for(state="hidden")
    assert not await page.evaluate("window.avatarCall.mic.getAudioTracks()[0].enabled")
    await page.click("#mute")
    await indicator.wait_for(state="visible")
