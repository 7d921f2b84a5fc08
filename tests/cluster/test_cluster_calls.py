"""Calls rendered on a real local Ray cluster: a head on 127.0.0.1 started by the test, the
render application with two tiny CPU replicas, and a media node (the real server, in this
process) whose ``render.cluster`` names the head. The real bot makes the calls."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from inference.asr import ScriptedAsr, ScriptedAsrOptions
from inference.avatar import AvatarStore
from inference.cluster.client import ClusterRenderer
from inference.cluster.connection import ClusterOptions
from inference.cluster.factory import ClusterRendererFactory, cluster_factory
from inference.dialogue import ScriptedDialogue, ScriptedDialogueOptions
from inference.render.warp import WarpOptions
from inference.tts import FakeTts, FakeTtsOptions
from signaling.client.bot import BotOptions, BotReport, run_bot
from signaling.config import Settings
from signaling.server.app import create_app
from signaling.stages.services import Services, WarpRendererFactory
from tests.cluster.ray_local import deploy_render_app, ray_head, use_local_ray

pytestmark = pytest.mark.slow

REPLY = (
    "We are open from nine to five on weekdays. On Saturdays we open at ten. "
    "See you soon, and thank you for calling."
)
# tiny random networks on the CPU; a fixed frame budget so each replica has room for one
# call (a call commits 0.4 x 25 = 10 frames/s, a replica offers 0.9 x 12 = 10.8)
REPLICA = {
    "random_weights": True,
    "arch": "tiny",
    "device": "cpu",
    "compile": False,
    "torch_threads": 1,
    "max_batch": 8,
    "capacity_fps": 12.0,
    "warm_size": [160, 128],
    "stall_floor_s": 60.0,
    "start_latency_s": 2.8,
}


@pytest.fixture(scope="module")
def cluster_address() -> Iterator[str]:
    use_local_ray()
    with ray_head(num_cpus=6) as head:
        deploy_render_app(head.gcs_address, replicas=2, options=REPLICA)
        try:
            yield head.gcs_address
        finally:
            import ray

            ray.shutdown()


@pytest.fixture
async def media_node(
    cluster_address: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, ClusterRendererFactory]]:
    monkeypatch.setenv("AVATAR_RTC_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    # a shared 2-core test machine renders a few frames per second: frames are due 3 s
    # after their audio (0.3 s in production) and a replica silent for 3 s is stalled
    options = ClusterOptions(address=cluster_address, start_latency_s=3.0, failover_s=3.0)
    factory = await asyncio.to_thread(
        functools.partial(cluster_factory, cluster_address, output_height=128, options=options)
    )
    services = Services(
        asr=ScriptedAsr(ScriptedAsrOptions(transcripts=("What are your opening hours?",))),
        dialogue=ScriptedDialogue(ScriptedDialogueOptions(replies=(REPLY,), greeting_text="Hi.")),
        tts=FakeTts(FakeTtsOptions()),
        avatars=AvatarStore(Path(tmp_path_factory.mktemp("avatars"))),
        renderers=WarpRendererFactory(WarpOptions(output_long_side=128)),
    )
    avatar = services.avatar("astronaut")
    services.renderers = factory
    factory.warm(avatar)
    settings = Settings(
        host="127.0.0.1",
        port=0,
        max_sessions=4,
        heartbeat_timeout_s=20.0,
        render={"renderer": "musetalk", "cluster": cluster_address, "output_height": 128},
    )
    server = TestServer(create_app(settings, services=services), host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}", factory
    finally:
        await server.close()
        factory.cluster.close()


def _bot(url: str) -> asyncio.Task[BotReport]:
    return asyncio.create_task(
        run_bot(BotOptions(url=url, text="What are your opening hours?", timeout_s=90))
    )


async def _renderers(factory: ClusterRendererFactory, n: int) -> list[ClusterRenderer]:
    """The renderers of ``n`` calls once each has asked for its greeting."""
    for _ in range(1200):
        found = list(factory.renderers().values())
        if len(found) >= n and all(r.stats.patches >= 1 for r in found):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{n} calls did not start rendering: {[r.stats for r in found]}")


async def _room(factory: ClusterRendererFactory) -> None:
    """Wait until the cluster admits a call (the calls of an earlier test have left the
    replicas' budgets: their reports reach the ledger and the media node within seconds)."""
    for _ in range(600):
        refusal = await asyncio.to_thread(factory.admit)
        if refusal is None:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the cluster never had room again: {refusal}")


def _describe(factory: ClusterRendererFactory, renderer: ClusterRenderer) -> dict[str, Any]:
    """The replica holding the call (the router learns where a call is within moments)."""
    handle = factory.cluster.replicas.options(multiplexed_model_id=renderer.key)
    call = renderer.key.split("#")[0]
    for _ in range(100):
        result: dict[str, Any] = handle.describe.remote().result(timeout_s=30)
        if call in result["calls"]:
            return result
        time.sleep(0.1)
    raise AssertionError(f"no replica says it holds {call}")


def _check_reply(report: BotReport) -> None:
    assert report.reply_text.strip() == REPLY, report.errors
    assert report.reply_audio_s is not None and report.reply_audio_s > 5.0, report.reply_audio_s
    assert report.video_frames > 100
    assert [128, 128] in report.video_sizes or any(s[1] == 128 for s in report.video_sizes)


async def test_two_calls_render_on_two_replicas_and_a_third_is_refused(
    media_node: tuple[str, ClusterRendererFactory],
) -> None:
    url, factory = media_node
    bots = [_bot(url), _bot(url)]
    a, b = await _renderers(factory, 2)
    where = [await asyncio.to_thread(_describe, factory, r) for r in (a, b)]
    assert where[0]["pid"] != where[1]["pid"], "both calls went to one replica"
    await asyncio.sleep(2.0)  # the replicas report their budget, the media node reads it
    async with ClientSession() as http:
        async with http.post(url + "/offer", json={"sdp": "v=0", "type": "offer"}) as resp:
            assert resp.status == 503
            assert int(resp.headers["Retry-After"]) >= 1
            assert "render cluster full" in (await resp.json())["error"]
        async with http.get(url + "/metrics") as resp:
            metrics = await resp.text()
    assert 'avatar_cluster_headroom_fps{scope="best"}' in metrics
    assert "avatar_cluster_reachable 1.0" in metrics
    reports = await asyncio.gather(*bots)
    for report in reports:
        _check_reply(report)
    for r in (a, b):  # the lips moved: frames rendered on the cluster were shown (on this
        # shared 2-core machine the tiny replicas render a few frames/s: most are held)
        assert r.stats.patches >= 10, r.stats
        assert r.stats.moves == 0


async def test_killing_a_replica_moves_its_call_and_spares_the_other(
    media_node: tuple[str, ClusterRendererFactory],
) -> None:
    url, factory = media_node
    await _room(factory)
    bots = [_bot(url), _bot(url)]
    a, b = await _renderers(factory, 2)
    victim = await asyncio.to_thread(_describe, factory, a)
    spared = await asyncio.to_thread(_describe, factory, b)
    assert victim["pid"] != spared["pid"]
    for _ in range(1200):  # kill in the middle of the reply (its first sentence)
        if a.stats.pieces >= 2 and a.stats.patches + a.stats.held > 40:
            break
        await asyncio.sleep(0.05)
    before = a.stats.patches
    killed_at = time.monotonic()
    os.kill(int(victim["pid"]), signal.SIGKILL)
    back_at = None
    survivor: dict[str, Any] | None = None
    while not all(bot.done() for bot in bots):
        if back_at is None and a.stats.patches > before:
            back_at = time.monotonic()  # the first frame from the replica it moved to
            survivor = await asyncio.to_thread(_describe, factory, a)
        await asyncio.sleep(0.02)
    reports = [bot.result() for bot in bots]
    for report in reports:
        _check_reply(report)  # the voice of both calls went on to the end
    # the call moved: killed mid-piece, its stream failed and the rest of the piece went
    # under a new key; killed between pieces, the router sent its next piece elsewhere
    assert a.stats.moves >= 1 or a.stats.pieces >= 3, a.stats
    frozen = "never" if back_at is None else f"{back_at - killed_at:.2f} s"
    print(f"\nmoved call: first frame from the live replica after {frozen}; {a.stats}; {b.stats}")
    assert back_at is not None and survivor is not None, f"no frames after the kill: {a.stats}"
    assert survivor["pid"] == spared["pid"], "the call did not move to the live replica"
    assert b.stats.moves == 0, "the call on the other replica noticed"
