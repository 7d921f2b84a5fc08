"""The call page in real chromium against the real server and its embedded models."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from inference.dialogue import FaqDialogueOptions, make_dialogue
from inference.dialogue.faq import FaqDialogue
from tests.browser.conftest import QUESTION
from tests.browser.harness import sample_audio_levels, sample_video

pytestmark = pytest.mark.browser

SILENT_RMS = 0.003  # received audio quieter than this counts as silence (speech is ~0.1-0.4)


def faq_answer(question: str) -> str:
    faq = make_dialogue(FaqDialogueOptions())
    assert isinstance(faq, FaqDialogue)
    assert faq.match(question) is not None, "the question must hit a knowledge-base entry"
    return " ".join(faq.answer_text(question)[0].split())


async def agent_captions(page: Any) -> list[str]:
    texts: list[str] = await page.locator("#captions .caption.agent .text").all_inner_texts()
    return [" ".join(t.split()) for t in texts]


async def stats_figures(page: Any) -> dict[str, float]:
    """The quality indicator's getStats figures (data-* attributes), as numbers."""
    data: dict[str, str] = await page.evaluate("({...document.querySelector('#quality').dataset})")
    out: dict[str, float] = {}
    for key, value in data.items():
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


async def test_spoken_question_gets_captioned_answer_and_moving_video(
    talking_browser: Any, server: str, artifacts: Path
) -> None:
    expected = faq_answer(QUESTION)
    page = await talking_browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(server + "/")
    await page.wait_for_function("document.querySelector('#avatar').options.length > 0")
    assert await page.locator("#avatar").input_value() == "astronaut"

    clicked = time.perf_counter()
    await page.click("#call")
    await page.wait_for_function(
        "document.querySelector('#avatar-video').dataset.firstFrame === 'true'", timeout=15_000
    )
    first_frame_ms = await page.evaluate(
        "performance.getEntriesByName('call-to-first-frame')[0].duration"
    )
    wall_ms = (time.perf_counter() - clicked) * 1000
    assert await page.locator("#connection").inner_text() == "Connected"
    assert await page.locator("#mic-indicator").is_visible()

    # The reply to the spoken question: its first caption sentence appears, then the
    # avatar speaks it; sample the picture and the browser's stats while it does.
    await page.wait_for_function(
        "[...document.querySelectorAll('#captions .caption.caller')].some("
        "  (li) => /opening hours/i.test(li.textContent))",
        timeout=30_000,
    )
    await page.wait_for_function(
        "document.querySelector('#agent-state').dataset.state === 'speaking'", timeout=20_000
    )
    mouth = tuple(await page.evaluate("window.avatarCall.hello.mouth_box"))
    whole = await sample_video(page, "#avatar-video", count=4, interval_ms=100)
    samples = await sample_video(page, "#avatar-video", count=16, interval_ms=120, box=mouth)
    during_reply = [await stats_figures(page)]
    await page.wait_for_timeout(1000)
    during_reply.append(await stats_figures(page))
    await page.screenshot(path=str(artifacts / "call-speaking.png"))

    # Not black, not frozen: bright enough, and successive samples differ.
    assert all(s["width"] > 0 and s["height"] > 0 for s in samples)
    assert statistics.mean(s["mean"] for s in whole) > 30, whole
    diffs = [s["diff"] for s in samples if s["diff"] is not None]
    assert sum(d > 1.5 for d in diffs) >= len(diffs) // 2, diffs
    assert samples[-1]["time"] > samples[0]["time"]

    await page.wait_for_function(
        "(want) => [...document.querySelectorAll('#captions .caption.agent .text')].some("
        "  (el) => el.textContent.replace(/\\s+/g, ' ').trim() === want)",
        arg=expected,
        timeout=30_000,
    )
    assert expected in await agent_captions(page)
    figures = during_reply[-1]
    assert figures.get("fps", 0) > 5, during_reply
    # the browser answers the server's ICE pings (the queue probe that ends a drain early)
    scraped = await (await page.request.get(server + "/metrics")).text()
    rtts = [
        float(line.rsplit(" ", 1)[1])
        for line in scraped.splitlines()
        if line.startswith("avatar_path_rtt_seconds{")
    ]
    assert rtts and all(0 < r < 0.5 for r in rtts), rtts
    # chromium negotiated transport-wide sequence numbers on voice and video and reports
    # them (and sends no REMB for the video: the server estimates from the reports)
    answer: str = await page.evaluate("window.avatarCall.pc.remoteDescription.sdp")
    assert answer.count("transport-wide-cc-extensions-01") == 2, answer
    queues = [
        float(line.rsplit(" ", 1)[1])
        for line in scraped.splitlines()
        if line.startswith("avatar_path_queue_seconds{")
    ]
    assert queues and all(0 <= q < 0.5 for q in queues), queues
    assert "audioDelayMs" in figures and "videoDelayMs" in figures, figures
    assert "rung" in figures, figures  # the server's quality event reached the indicator
    level = await page.get_attribute("#quality", "data-level")
    assert level in ("good", "fair", "poor")
    await page.screenshot(path=str(artifacts / "call-answered.png"))
    await page.wait_for_function(
        "document.querySelector('#agent-state').dataset.state === 'listening'", timeout=20_000
    )
    idle = await sample_video(page, "#avatar-video", count=10, interval_ms=120, box=mouth)
    idle_diffs = [s["diff"] for s in idle if s["diff"] is not None]
    # The lips move while it speaks, far more than in the idle loop.
    assert statistics.median(diffs) > 3 * statistics.median(idle_diffs) + 1.0, (diffs, idle_diffs)

    await page.click("#hangup")
    await page.wait_for_function("document.querySelector('#connection').dataset.state === 'closed'")
    assert not await page.locator("#mic-indicator").is_visible()
    assert errors == []
    print(
        f"\ncall page: click → first frame {first_frame_ms:.0f} ms (wall {wall_ms:.0f} ms); "
        f"getStats during the reply: {during_reply[-1]}"
    )


async def test_interrupt_silences_the_avatar(
    quiet_browser: Any, server: str, artifacts: Path
) -> None:
    page = await quiet_browser.new_page()
    await page.goto(server + "/")
    await page.click("#call")
    await page.wait_for_function(
        "document.querySelector('#connection').dataset.state === 'connected'"
    )
    await page.fill("#type-text", "What is your return policy?")
    await page.click("#send")
    await page.wait_for_function(
        "[...document.querySelectorAll('#captions .caption.agent .text')].some("
        "  (el) => /return most items/.test(el.textContent))",
        timeout=20_000,
    )
    await page.wait_for_function(
        "document.querySelector('#agent-state').dataset.state === 'speaking'", timeout=10_000
    )
    # "speaking" is sent with the first audio packet; the browser plays it after its
    # jitter buffer, and the voice may begin with a breath of silence: allow 3 s.
    loud = await sample_audio_levels(page, count=30, interval_ms=100, stop_above=10 * SILENT_RMS)
    assert loud[-1]["rms"] > 10 * SILENT_RMS, loud

    await page.click("#interrupt")
    clicked = await page.evaluate("performance.now()")
    after = await sample_audio_levels(page, count=20, interval_ms=100)
    await page.wait_for_function(
        "document.querySelector('#agent-state').dataset.state === 'listening'", timeout=3_000
    )
    quiet_from = next(
        (i for i in range(len(after)) if all(s["rms"] < SILENT_RMS for s in after[i:])),
        None,
    )
    assert quiet_from is not None and quiet_from < len(after) - 5, after
    silent_ms = after[quiet_from]["t"] - clicked
    assert silent_ms < 1500, (silent_ms, after)
    # The picture goes on (idle loop), the call stays up.
    samples = await sample_video(page, "#avatar-video", count=4, interval_ms=120)
    assert samples[-1]["time"] > samples[0]["time"]
    assert await page.locator("#connection").inner_text() == "Connected"
    await page.screenshot(path=str(artifacts / "call-interrupted.png"))
    print(
        f"\ninterrupt: 'speaking' → audible after {100 * len(loud)} ms; "
        f"click → received audio silent within {silent_ms:.0f} ms"
    )
