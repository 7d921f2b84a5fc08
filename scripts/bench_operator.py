"""Operator voice -> caller latency, against the agent's own reply path in the same run.

    python scripts/bench_operator.py                 # 5 lines each way, fake ASR/TTS
    python scripts/bench_operator.py --reps 2 --json out.json

The server runs in this process on 127.0.0.1 (the FAQ dialogue, a scripted ASR, the fake
TTS and the warp renderer at 256 px: the operator's path has no ASR or TTS, so only the
render and transport costs it shares with the agent's path are real). A caller (aiortc,
a paced microphone) and an operator peer (aiortc, the console's ``/voice`` peer) connect
over loopback WebRTC. Two numbers, each the median over ``--reps`` lines:

- ``operator_ms``: the operator starts a line (the first voiced 20 ms on their microphone,
  on air) -> the caller receives the avatar's audio of it (first 20 ms above -36 dBFS);
- ``agent_ms``: the caller stops asking a question (the last voiced 20 ms on air) -> the
  caller receives the first audio of the agent's reply (end-of-speech wait, ASR, dialogue,
  TTS, render included);

and ``ratio`` = operator / agent; also ``caller_to_operator_ms``: the caller starts a line
-> the operator receives it (the caller's voice reaches the operator without the avatar).
The operator's voice is espeak (a voice none of the
stages was tuned on); the caller's question is the same clip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp.test_utils import TestServer
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from inference.asr import ScriptedAsr, ScriptedAsrOptions
from inference.audio import resample_int16
from inference.avatar import AvatarStore
from inference.dialogue import FaqDialogue
from inference.render.warp import WarpOptions
from inference.tts import FakeTts, FakeTtsOptions
from signaling.client.bot_audio import MIC_RATE, MicTrack, voiced_span
from signaling.client.bot_media import ReceivedMedia, consume_audio
from signaling.config import Settings
from signaling.ice import enable_loopback_candidates
from signaling.server.app import create_app
from signaling.stages.services import Services, WarpRendererFactory

KEY = "bench-operator-key-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}", "X-Operator-Name": "bench"}
LOUD = 32768 * 10 ** (-36 / 20)  # -36 dBFS


class Peer:
    """One side: a paced 48 kHz microphone out, whatever audio comes back (arrival-stamped)."""

    def __init__(self, *, video: bool) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = MicTrack()
        self.pc.addTransceiver(self.mic, direction="sendrecv")
        if video:
            self.pc.addTransceiver("video", direction="recvonly")
        self.heard = ReceivedMedia()
        self.tasks: list[asyncio.Task[None]] = []

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self.tasks.append(asyncio.ensure_future(consume_audio(track, self.heard)))
            else:
                self.tasks.append(asyncio.ensure_future(_drain(track)))

    async def offer(self) -> dict[str, str]:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return {"sdp": self.pc.localDescription.sdp, "type": "offer"}

    async def answer(self, body: dict[str, Any]) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))

    def first_loud(self, after: float) -> float | None:
        for pcm, at in zip(self.heard.audio_chunks, self.heard.audio_t, strict=True):
            if at >= after and np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > LOUD:
                return at
        return None

    async def quiet(self, for_s: float = 0.6, timeout_s: float = 30.0) -> None:
        """Wait until nothing loud has arrived for ``for_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            recent = self.first_loud(time.monotonic() - for_s)
            if recent is None and self.heard.audio_t:
                return
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


async def _drain(track: MediaStreamTrack) -> None:
    while True:
        await track.recv()


def _services(avatars: Path) -> Services:
    services = Services(
        asr=ScriptedAsr(ScriptedAsrOptions(transcripts=("What are your opening hours?",))),
        dialogue=FaqDialogue.load(),
        tts=FakeTts(FakeTtsOptions()),
        avatars=AvatarStore(avatars),
        renderers=WarpRendererFactory(WarpOptions(output_long_side=256, seed=1)),
    )
    services.avatar("astronaut")
    return services


def _line() -> np.ndarray:
    from tests.harness.voices import speak  # espeak: a voice the stages were not tuned on

    pcm = speak("espeak-en-us-140", "Hello, this is Ann from the support team.")
    return resample_int16(pcm, 16000, MIC_RATE)


async def _first_loud(peer: Peer, after: float, *, timeout_s: float) -> float | None:
    """Arrival time of the first loud audio after ``after`` (polled: the receive task
    appends to ``peer.heard``)."""
    for _ in range(int(timeout_s / 0.02)):
        heard = peer.first_loud(after)
        if heard is not None:
            return heard
        await asyncio.sleep(0.02)
    return None


async def _agent_turn(caller: Peer, clip: np.ndarray) -> float:
    _, end = voiced_span(clip)
    playing = caller.mic.play(clip)
    on_air = await asyncio.wait_for(playing.started, 10)
    spoken_end = on_air + end
    await asyncio.wait_for(playing.finished, 20)
    heard = await _first_loud(caller, spoken_end, timeout_s=20)
    if heard is None:
        raise RuntimeError("the agent never answered the caller")
    await caller.quiet()
    return (heard - spoken_end) * 1000


async def _operator_line(operator: Peer, caller: Peer, clip: np.ndarray) -> float:
    start, _ = voiced_span(clip)
    playing = operator.mic.play(clip)
    onset = await asyncio.wait_for(playing.started, 10) + start
    heard = await _first_loud(caller, onset, timeout_s=10)
    if heard is None:
        raise RuntimeError("the caller never heard the operator")
    await asyncio.wait_for(playing.finished, 20)
    await caller.quiet()
    return (heard - onset) * 1000


async def _caller_line(caller: Peer, operator: Peer, clip: np.ndarray) -> float:
    start, _ = voiced_span(clip)
    playing = caller.mic.play(clip)
    onset = await asyncio.wait_for(playing.started, 10) + start
    heard = await _first_loud(operator, onset, timeout_s=10)
    if heard is None:
        raise RuntimeError("the operator never heard the caller")
    await asyncio.wait_for(playing.finished, 20)
    await operator.quiet()
    return (heard - onset) * 1000


async def run(reps: int, avatars: Path) -> dict[str, Any]:
    enable_loopback_candidates()
    settings = Settings(
        host="127.0.0.1",
        port=0,
        heartbeat_timeout_s=30.0,
        access={"operator_keys": [KEY], "turns_per_s": 50, "turn_burst": 50},
        records={"enabled": False},
        handoff={"company_every_s": 600.0},
    )
    server = TestServer(create_app(settings, services=_services(avatars)), host="127.0.0.1")
    await server.start_server()
    url = f"http://127.0.0.1:{server.port}"
    clip = _line()
    caller, operator = Peer(video=True), Peer(video=False)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/offer", json=await caller.offer()) as r:
                body = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"/offer: {r.status} {body}")
            await caller.answer(body)
            call_id = body["session"]
            await asyncio.sleep(1.0)
            await caller.quiet()  # the greeting has played
            agent = [await _agent_turn(caller, clip) for _ in range(reps)]
            base = f"{url}/operator/calls/{call_id}"
            async with http.post(base + "/take", headers=HEADERS) as r:
                assert r.status == 200, await r.text()
            async with http.post(
                base + "/voice", json=await operator.offer(), headers=HEADERS
            ) as r:
                voice = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"/voice: {r.status} {voice}")
            await operator.answer(voice)
            await asyncio.sleep(1.0)
            spoken = [await _operator_line(operator, caller, clip) for _ in range(reps)]
            heard = [await _caller_line(caller, operator, clip) for _ in range(reps)]
    finally:
        await caller.close()
        await operator.close()
        await server.close()
    op_ms, agent_ms = statistics.median(spoken), statistics.median(agent)
    return {
        "reps": reps,
        "operator_ms": round(op_ms, 1),
        "agent_ms": round(agent_ms, 1),
        "ratio": round(op_ms / agent_ms, 3),
        "caller_to_operator_ms": round(statistics.median(heard), 1),
        "operator_all_ms": [round(x, 1) for x in spoken],
        "agent_all_ms": [round(x, 1) for x in agent],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--reps", type=int, default=5, help="lines each way (median of them)")
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args(argv)
    if args.reps < 1:
        p.error("--reps must be >= 1")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-operator-") as avatars:
        result = asyncio.run(run(args.reps, Path(avatars)))
    load = os.getloadavg()
    result["machine"] = {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in load]}
    print(
        f"operator voice -> caller: {result['operator_ms']:.0f} ms (median of {args.reps}); "
        f"agent reply -> caller: {result['agent_ms']:.0f} ms; ratio {result['ratio']:.2f}; "
        f"caller -> operator: {result['caller_to_operator_ms']:.0f} ms\n"
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
