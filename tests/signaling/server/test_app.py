"""The aiohttp app in-process: readiness, admission control, metrics, shutdown, logs."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from signaling.client.bot import BotOptions, run_bot
from signaling.config import Settings
from signaling.server.app import STATE, create_app, drain
from signaling.server.logs import bind_session, configure_logging
from signaling.stages.services import Services


async def start(app: Any) -> tuple[TestServer, str]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, f"http://127.0.0.1:{server.port}"


async def test_ready_is_503_until_models_load(settings: Settings, fake_services: Services) -> None:
    gate = asyncio.Event()

    async def slow_loader(_: Settings) -> Services:
        await gate.wait()
        return fake_services

    server, url = await start(create_app(settings, loader=slow_loader))
    try:
        async with ClientSession() as http:
            async with http.get(url + "/health/ready") as r:
                assert r.status == 503
                assert (await r.json())["status"] == "loading"
            async with http.post(url + "/offer", json={"sdp": "v=0", "type": "offer"}) as r:
                assert r.status == 503
                assert r.headers["Retry-After"]
            async with http.get(url + "/health/live") as r:
                assert r.status == 200
            gate.set()
            for _ in range(50):
                async with http.get(url + "/health/ready") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.05)
            assert r.status == 200
    finally:
        await server.close()


async def test_failed_load_is_reported(settings: Settings) -> None:
    async def broken(_: Settings) -> Services:
        raise FileNotFoundError("/models/whisper: missing model.bin")

    server, url = await start(create_app(settings, loader=broken))
    try:
        async with ClientSession() as http:
            for _ in range(50):
                async with http.get(url + "/health/ready") as r:
                    body = await r.json()
                if body["status"] == "error":
                    break
                await asyncio.sleep(0.02)
            assert "model.bin" in body["error"]
    finally:
        await server.close()


async def test_call_metrics_admission_and_goodbye(
    settings: Settings, fake_services: Services
) -> None:
    app = create_app(settings.model_copy(update={"max_sessions": 1}), services=fake_services)
    server, url = await start(app)
    try:
        report = await run_bot(BotOptions(url=url, text="When are you open?", timeout_s=20))
        assert not report.errors, report.errors
        assert report.reply_text.strip() == "We are open from nine to five. See you soon."
        async with ClientSession() as http:
            async with http.get(url + "/metrics") as r:
                text = await r.text()
        assert "avatar_sessions_total 1.0" in text
        assert 'avatar_turn_seconds_count{milestone="first_sent"}' in text
        assert 'avatar_frames_total{outcome="reply"}' in text

        # The finished call is cleaned up promptly (the bot hung up).
        state = app[STATE]
        for _ in range(100):
            if not state.sessions:
                break
            await asyncio.sleep(0.05)
        assert not state.sessions
        # One call at a time: while a call is up, the next offer gets a clean 503.
        bot = asyncio.create_task(
            run_bot(BotOptions(url=url, text="Where is my order?", timeout_s=20, listen_s=6))
        )
        for _ in range(200):
            if state.sessions:
                break
            await asyncio.sleep(0.05)
        assert state.sessions
        async with ClientSession() as http:
            async with http.post(url + "/offer", json={"sdp": "v=0", "type": "offer"}) as r:
                assert r.status == 503
                assert r.headers["Retry-After"] == "10"
                assert "busy" in (await r.json())["error"]
            async with http.get(url + "/health/ready") as r:
                assert (await r.json())["status"] == "full"
        # Graceful shutdown while the call is up: the avatar says goodbye, then hangs up.
        await asyncio.sleep(1.0)
        await drain(app)
        await server.close()
        done = await asyncio.wait_for(bot, 30)
        said = [e for e in done.events if e.get("type") == "reply_text"]
        assert any("goodbye" in e["text"].lower() for e in said), said
        assert any(e.get("type") == "state" and e.get("state") == "closed" for e in done.events)
    finally:
        await server.close()


async def test_hostile_json_bodies_get_a_clear_400(
    settings: Settings, fake_services: Services
) -> None:
    """Nesting deep enough to exhaust the parser's recursion, and NaN, which JSON lacks."""
    server, url = await start(create_app(settings, services=fake_services))
    deep = "[" * 1500 + "]" * 1500  # within /session's 4 KB
    bodies = [("/session", deep), ("/offer", deep), ("/offer", "[" * 30000 + "]" * 30000)]
    bodies.append(("/offer", '{"a":' * 1500 + "1" + "}" * 1500))
    headers = {"Content-Type": "application/json"}
    try:
        async with ClientSession() as http:
            for path, body in bodies:
                async with http.post(url + path, data=body, headers=headers) as r:
                    assert r.status == 400, (path, r.status)
                    assert "nested deeper than 32 levels" in (await r.json())["error"]
            for path in ("/offer", "/session"):
                async with http.post(url + path, data='{"x":NaN}', headers=headers) as r:
                    assert r.status == 400
                    assert "not valid JSON" in (await r.json())["error"]
    finally:
        await server.close()


def test_log_lines_carry_the_session(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    try:

        async def call() -> None:
            bind_session("abc123")
            logging.getLogger("aiortc.fake").warning("from a library")

        asyncio.run(call())
        line = capsys.readouterr().err.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["session"] == "abc123"
        assert record["event"] == "from a library"
    finally:
        logging.getLogger().handlers.clear()


def test_cache_counters_follow_the_cache() -> None:
    from signaling.metrics import Metrics

    m = Metrics()
    m.sync_cache({"by_kind": {"tts": {"hits": 3, "misses": 2}}})
    m.sync_cache({"by_kind": {"tts": {"hits": 5, "misses": 2}, "clip": {"hits": 0, "misses": 1}}})
    text = m.render().decode()
    assert 'avatar_cache_total{cache="tts",result="hit"} 5.0' in text
    assert 'avatar_cache_total{cache="tts",result="miss"} 2.0' in text
    assert 'avatar_cache_total{cache="clip",result="miss"} 1.0' in text


def test_metrics_can_be_turned_off() -> None:
    from signaling.metrics import Metrics

    m = Metrics(enabled=False)
    m.stage_seconds.labels(stage="asr").observe(0.1)
    m.frames_total.labels(outcome="reply").inc()
    m.quality_rung.labels(session="x").set(2)
    m.quality_rung.remove("x")
    m.observe_turn({"first_sent": 120.0})
    m.sync_cache({"by_kind": {"tts": {"hits": 1, "misses": 0}}})
    assert b"avatar_" not in m.render()


async def test_metrics_endpoint_off(settings: Settings, fake_services: Services) -> None:
    app = create_app(settings.model_copy(update={"metrics_enabled": False}), services=fake_services)
    server, url = await start(app)
    try:
        async with ClientSession() as http:
            async with http.get(url + "/metrics") as r:
                assert r.status == 404
    finally:
        await server.close()


async def test_voice_fec_follows_the_setting_and_the_offer(
    settings: Settings, fake_services: Services
) -> None:
    """``media.voice_fec_loss_pct`` turns Opus in-band FEC on for callers whose offer says
    they decode it (``useinbandfec=1``, as browsers' do); aiortc's offer does not say so."""
    from aiortc import RTCPeerConnection
    from aiortc.codecs.opus import OpusEncoder

    from media.aiortc_hooks import sender_encoder

    async def voice_options(pct: int, fec_in_offer: bool) -> dict[str, str]:
        media = settings.media.model_copy(update={"voice_fec_loss_pct": pct})
        app = create_app(settings.model_copy(update={"media": media}), services=fake_services)
        server, url = await start(app)
        pc = RTCPeerConnection()
        try:
            pc.addTransceiver("audio", direction="sendrecv")
            pc.addTransceiver("video", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            sdp = pc.localDescription.sdp
            opus = "a=rtpmap:96 opus/48000/2\r\n"
            assert opus in sdp and "useinbandfec" not in sdp
            if fec_in_offer:
                sdp = sdp.replace(opus, opus + "a=fmtp:96 minptime=10;useinbandfec=1\r\n")
            async with ClientSession() as http:
                async with http.post(url + "/offer", json={"sdp": sdp, "type": "offer"}) as r:
                    assert r.status == 200, await r.text()
            (session,) = app[STATE].sessions.values()
            assert session.quality is not None and session.quality.audio_sender is not None
            encoder = sender_encoder(session.quality.audio_sender)
            assert isinstance(encoder, OpusEncoder)
            return dict(encoder.codec.options)
        finally:
            await pc.close()
            await drain(app)
            await server.close()

    on = await voice_options(10, fec_in_offer=True)
    assert on["fec"] == "1" and on["packet_loss"] == "10"
    assert "fec" not in await voice_options(10, fec_in_offer=False)
    assert "fec" not in await voice_options(0, fec_in_offer=True)  # the default: off
