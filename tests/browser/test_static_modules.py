"""The pure parts of static/ (stats, silence watch, constraints, embed URL) run in chromium."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser


async def run_js(browser: Any, server: str, script: str) -> Any:
    page = await browser.new_page()
    await page.goto(server + "/static/style.css")  # any page of the server's origin
    return await page.evaluate(script)


async def test_summarize_reads_interval_figures(quiet_browser: Any, server: str) -> None:
    got = await run_js(
        quiet_browser,
        server,
        """async () => {
          const { snapshot, summarize } = await import("/static/stats.js");
          const at = (t, audio, video, rtt) => [
            { type: "inbound-rtp", kind: "audio", timestamp: t, ...audio },
            { type: "inbound-rtp", kind: "video", timestamp: t, ...video },
            { type: "candidate-pair", nominated: true, currentRoundTripTime: rtt },
            { type: "outbound-rtp", kind: "audio", timestamp: t, packetsSent: 5 },
          ];
          const a = snapshot(at(1000,
            { jitter: 0.004, jitterBufferDelay: 3840, jitterBufferEmittedCount: 48000,
              totalAudioEnergy: 0.0, totalSamplesDuration: 1.0,
              packetsReceived: 50, packetsLost: 0 },
            { framesDecoded: 25, jitterBufferDelay: 1.0, jitterBufferEmittedCount: 25,
              bytesReceived: 100000, packetsReceived: 100, packetsLost: 0, frameHeight: 512 },
            0.002));
          const b = snapshot(at(3000,
            { jitter: 0.01, jitterBufferDelay: 9600, jitterBufferEmittedCount: 144000,
              totalAudioEnergy: 0.08, totalSamplesDuration: 3.0,
              packetsReceived: 150, packetsLost: 0 },
            { framesDecoded: 75, jitterBufferDelay: 3.0, jitterBufferEmittedCount: 75,
              bytesReceived: 350000, packetsReceived: 290, packetsLost: 10, frameHeight: 512 },
            0.004));
          return { first: summarize(null, a), second: summarize(a, b) };
        }""",
    )
    second = got["second"]
    assert second["fps"] == 25.0  # 50 frames in 2 s
    assert second["videoKbps"] == 1000  # 250,000 bytes in 2 s
    assert second["audioDelayMs"] == 60.0  # 5,760 sample-seconds over 96,000 samples
    assert second["videoDelayMs"] == 40.0  # 2 s over 50 frames
    assert second["avOffsetMs"] == -20.0
    assert second["lossPct"] == 3.3  # 10 lost of 10 + 290 received
    assert second["audioLevel"] == 0.2  # sqrt(0.08 / 2)
    assert second["audioJitterMs"] == 10.0 and second["rttMs"] == 4.0
    assert second["height"] == 512
    first = got["first"]  # no earlier sample: totals since the start
    assert first["audioDelayMs"] == 80.0 and first["videoDelayMs"] == 40.0


async def test_rating_and_silence_watch(quiet_browser: Any, server: str) -> None:
    got = await run_js(
        quiet_browser,
        server,
        """async () => {
          const { rateConnection } = await import("/static/stats.js");
          const { SilenceWatch } = await import("/static/idle.js");
          const { micConstraints } = await import("/static/call.js");
          const good = { fps: 25, lossPct: 0, rttMs: 5, videoDelayMs: 40, audioJitterMs: 3 };
          const rates = {
            none: rateConnection({}).level,
            good: rateConnection({ stats: good }).level,
            lossy: rateConnection({ stats: { ...good, lossPct: 4 } }),
            slow: rateConnection({ stats: { ...good, fps: 5 } }).level,
            lowRung: rateConnection({ stats: good, quality: { rung: 2, height: 384 } }).level,
            onlyRung: rateConnection({ quality: { rung: 0 } }).level,
          };
          const w = new SilenceWatch({ idleMs: 10000, warnMs: 3000 });
          const phases = [w.check(0).phase];
          w.activity(1000);
          phases.push(w.check(7000).phase, w.check(8500).phase, w.check(11000).phase);
          w.setBusy(true, 11000);
          phases.push(w.check(60000).phase);
          w.setBusy(false, 60000);
          phases.push(w.check(69000).phase, w.check(70000).phase);
          let bad = null;
          try { new SilenceWatch({ idleMs: 1000, warnMs: 1000 }); } catch (e) { bad = e.name; }
          return { rates, phases, bad, mic: micConstraints("abc"), anyMic: micConstraints() };
        }""",
    )
    rates = got["rates"]
    assert rates["none"] == "unknown" and rates["good"] == "good" and rates["onlyRung"] == "good"
    assert rates["lossy"] == {"level": "fair", "why": ["loss % 4"]}
    assert rates["slow"] == "poor" and rates["lowRung"] == "fair"
    assert got["phases"] == ["ok", "ok", "warn", "end", "ok", "warn", "end"]
    assert got["bad"] == "RangeError"
    mic = got["mic"]["audio"]
    assert mic["echoCancellation"] and mic["noiseSuppression"] and mic["autoGainControl"]
    assert mic["deviceId"] == {"exact": "abc"} and "deviceId" not in got["anyMic"]["audio"]


async def test_embed_builds_the_kiosk_url_with_the_key_in_the_fragment(
    quiet_browser: Any, server: str
) -> None:
    page = await quiet_browser.new_page()
    await page.goto(server + "/static/style.css")
    await page.set_content(
        f"""<div id="box" style="width:300px;height:200px"></div>
        <script src="{server}/static/embed.js" data-key="pk_test_0123456789abcdef"
                data-avatar="astronaut" data-lang="zh" data-idle="45"
                data-mode="frame"></script>"""
    )
    await page.wait_for_selector("avatar-rtc-agent")
    src = await page.evaluate("document.querySelector('avatar-rtc-agent').frameUrl")
    assert src.startswith(server + "/static/kiosk.html?")
    query, _, fragment = src.partition("#")
    assert "avatar=astronaut" in query and "lang=zh" in query and "idle=45" in query
    assert "embed=1" in query and "pk_test" not in query
    assert fragment == "key=pk_test_0123456789abcdef"
    allow = await page.evaluate(
        "document.querySelector('avatar-rtc-agent').shadowRoot.querySelector('iframe').allow"
    )
    assert "microphone" in allow and "autoplay" in allow
    # No data-target: the element follows the script, full width with a 3:4 shape.
    box = await page.locator("avatar-rtc-agent").bounding_box()
    width = await page.evaluate("document.body.clientWidth")
    assert box is not None and abs(box["width"] - width) <= 1
    assert abs(box["height"] - box["width"] * 4 / 3) <= 2


async def test_captions_show_the_source_of_a_reply_once(quiet_browser: Any, server: str) -> None:
    got = await run_js(
        quiet_browser,
        server,
        """async () => {
          const { Captions, showCaptions } = await import("/static/widgets.js");
          const list = document.createElement("ol");
          document.body.append(list);
          const client = new EventTarget();
          showCaptions(client, new Captions(list));
          const reply = (text, index, source) => client.dispatchEvent(new CustomEvent(
            "reply_text", { detail: { text, language: "en", turn: 3, index, source } }));
          reply("Descale every 60 days.", 0, "care.md § Descaling");
          reply("Use citric acid.", 1, "care.md § Descaling");
          reply("Hello.", 0, undefined);
          const line = list.querySelector(".caption.agent");
          return {
            text: line.querySelector(".text").textContent,
            sources: [...line.querySelectorAll(".source")].map((e) => e.textContent),
            count: list.querySelectorAll(".source").length,
          };
        }""",
    )
    assert got["text"] == "Descale every 60 days. Use citric acid. Hello."
    assert got["sources"] == ["care.md § Descaling"]
    assert got["count"] == 1  # one line, one source
