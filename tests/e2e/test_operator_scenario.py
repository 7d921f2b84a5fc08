"""The contact-centre scenario of issue 21, for real: an ``avatar-rtc serve`` process with the
embedded models, a Chromium caller and a Chromium operator (two browsers, each with its own
fake microphone). The caller asks for a person (typed), the console shows the handoff, the
operator takes over, types a line and then speaks one (an unseen espeak voice), the caller
hears it from the avatar's moving lips, the operator hands back and the agent answers the
next question; the database then holds the whole call and the call's recording."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.audio import resample_int16
from tests.browser.harness import (
    CHROMIUM,
    ROOT,
    launch_chromium,
    run_server,
    sample_audio_levels,
    sample_video,
)
from tests.harness.voices import speak

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt chromium)"),
]

KEY = "operator-key-scenario-0123456789"
INBOUND_AUDIO_JS = """async (least) => {
  const pc = window.operatorVoice?.pc;
  if (!pc) return false;
  for (const s of (await pc.getStats()).values()) {
    if (s.type === "inbound-rtp" && s.kind === "audio") return s.packetsReceived >= least;
  }
  return false;
}"""
OPERATOR_LINE = "Hello, this is Ann from the support team. I can help you with that."
TYPED_LINE = "Hi, Ann here. Let me look at your order."


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def contact_centre(data_dir: Path) -> Iterator[str]:
    env = {
        "AVATAR_RTC_ACCESS__OPERATOR_KEYS": json.dumps([KEY]),
        "AVATAR_RTC_ACCESS__ANONYMOUS": "loopback",
        "AVATAR_RTC_DATA_DIR": str(data_dir),
        "AVATAR_RTC_RECORDS__MEDIA": "true",
        "AVATAR_RTC_HANDOFF__COMPANY_EVERY_S": "60",
    }
    with run_server(log=ROOT / "artifacts" / "e2e-operator-server.log", env=env) as url:
        yield url


def _operator_wav(path: Path, *, lead_s: float = 3.0) -> Path:
    """The operator's microphone: silence while the peer connects, then the line."""
    pcm = resample_int16(speak("espeak-en-us-140", OPERATOR_LINE), 16000, 48000)
    quiet = np.zeros(int(lead_s * 48000), np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(np.concatenate([quiet, pcm, quiet]).tobytes())
    return path


def _silence(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(bytes(2 * 48000 * 2))
    return path


def _get(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def test_a_person_takes_over_behind_the_same_face(
    contact_centre: str, data_dir: Path, tmp_path: Path
) -> None:
    url = contact_centre
    quiet_mic = _silence(tmp_path / "caller.wav")
    operator_mic = _operator_wav(tmp_path / "operator.wav")
    async with (
        launch_chromium(str(quiet_mic)) as caller_browser,
        launch_chromium(f"{operator_mic}%noloop") as operator_browser,
    ):
        console = await operator_browser.new_page()
        await console.goto(f"{url}/operator#key={KEY}&name=Ann")
        await console.wait_for_selector("#connection[data-state=connected]")

        caller = await caller_browser.new_page()
        errors: list[str] = []
        caller.on("pageerror", lambda e: errors.append(str(e)))
        await caller.goto(url + "/")
        await caller.wait_for_function("document.querySelector('#avatar').options.length > 0")
        await caller.click("#call")
        await caller.wait_for_function(
            "document.querySelector('#avatar-video').dataset.firstFrame === 'true'",
            timeout=20_000,
        )
        assert await caller.locator("#recorded").is_visible()  # told: this call is recorded
        call_id = await caller.evaluate("window.avatarCall.session")

        # The caller asks for a person: the console shows the handoff.
        await caller.fill("#type-text", "Can I speak to a human?")
        await caller.click("#send")
        queued = f"#queue button[data-call-id='{call_id}']"
        await console.wait_for_selector(queued, timeout=60_000)
        assert not await console.is_hidden("#alert")
        await console.click(queued)
        await console.click("#take")
        await caller.wait_for_function(
            "document.querySelector('#message-text').textContent.length > 0", timeout=10_000
        )

        # The operator types a line: the avatar says it in its voice.
        await console.wait_for_selector("#say-text:not([disabled])")
        await console.fill("#say-text", TYPED_LINE)
        await console.press("#say-text", "Enter")
        await caller.wait_for_function(
            "(want) => [...document.querySelectorAll('#captions .caption.agent .text')]"
            "  .some((el) => el.textContent.includes(want))",
            arg="Ann here",
            timeout=30_000,
        )
        await caller.wait_for_function(
            "document.querySelector('#agent-state').dataset.state === 'listening'",
            timeout=60_000,
        )
        mouth = tuple(await caller.evaluate("window.avatarCall.hello.mouth_box"))
        quiet = await sample_video(caller, "#avatar-video", count=16, interval_ms=120, box=mouth)

        # The operator talks: the caller hears the voice from the avatar's moving lips.
        await console.click("#talk")
        await console.wait_for_selector("#talk[data-state=live]", timeout=15_000)
        levels = await sample_audio_levels(caller, count=100, interval_ms=100, stop_above=0.02)
        assert max(s["rms"] for s in levels) > 0.02, levels
        talking = await sample_video(caller, "#avatar-video", count=16, interval_ms=120, box=mouth)
        # the lips move with the operator's voice, more than the idle loop moves them (samples
        # that caught no new frame, on a loaded machine, count as neither)
        moving = [s["diff"] for s in talking if s["diff"]]
        still = [s["diff"] for s in quiet if s["diff"]]
        assert statistics.median(moving) > 1.5 * statistics.median(still) + 0.5, (moving, still)
        await caller.screenshot(path=str(ROOT / "artifacts" / "e2e-operator-talking.png"))
        # ... and the caller's microphone reaches the operator's page all the while
        await console.wait_for_function(INBOUND_AUDIO_JS, arg=25, timeout=10_000)

        # Hand back: the agent answers the next question, the conversation kept.
        await console.click("#hand-back")
        await console.wait_for_selector("#say-text[disabled]")
        await caller.fill("#type-text", "When are you open?")
        await caller.click("#send")
        await caller.wait_for_function(
            "[...document.querySelectorAll('#captions .caption.agent .text')]"
            "  .some((el) => /Monday/.test(el.textContent))",
            timeout=30_000,
        )
        await caller.click("#hangup")
        assert not errors, errors

    # The database holds the whole call: what each side said, the take-over, the recording.
    deadline = time.monotonic() + 20
    record = _get(f"{url}/calls/{call_id}")
    while record["ended_at"] is None or (record["recording"] or {}).get("status") == "recording":
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.3)
        record = _get(f"{url}/calls/{call_id}")
    said = [(line["who"], line["text"]) for line in record["transcript"]]
    assert ("caller", "Can I speak to a human?") in said, said
    assert any(TYPED_LINE in text for _, text in said), said
    assert any(who == "agent" and "Monday" in text for who, text in said), said
    actions = [e["text"] for e in record["events"] if e["type"] == "action"]
    for action in ("take_over", "say", "voice_on", "voice_off", "hand_back"):
        assert action in actions, actions
    voice_off = next(e["data"] for e in record["events"] if e.get("text") == "voice_off")
    assert voice_off["voiced_s"] > 1.0, voice_off
    recording = record["recording"]
    assert recording["status"] == "complete" and recording["seconds"] > 5, recording
    assert (data_dir / recording["file"]).stat().st_size == recording["bytes"]
