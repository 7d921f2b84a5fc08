"""Two media nodes (real ``avatar-rtc serve`` processes, embedded defaults) behind one address.

A plain round-robin proxy that knows nothing about sessions, then the shipped nginx config:
real calls from the bot and the probe caller go through them, so a call's control socket and
resume land on the node that does not hold it and must be forwarded to the one that does;
hanging up through the other node ends the call on its owner. Sessions naming an unknown
node, or a node that is down, get a clear answer at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from signaling.client.bot import BotOptions, run_bot
from signaling.client.loadgen import OfferRefused, ProbeCall, ProbeOptions
from signaling.server.nodes import node_of
from tests.harness.rrproxy import RoundRobinProxy
from tests.harness.spawn import SpawnedServer, free_port, spawn_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "artifacts"
SECRET = "media-nodes-test-secret-0123456789"
API_KEY = "media-nodes-test-api-key-0123456789"  # tokens from one node start calls on another
NODES = ("media-1", "media-2")  # the names the shipped nginx config routes on
DOWN = "media-9"  # listed, but nothing answers at its address
QUESTION = "What are your opening hours?"
SHARED_STATE = "redis://127.0.0.1:6379/0"
FAKE_SDP = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 AA\r\n"


@dataclass(frozen=True)
class Cluster:
    servers: dict[str, SpawnedServer]

    def url(self, node: str) -> str:
        return self.servers[node].url

    def sessions(self, node: str) -> int:
        with urllib.request.urlopen(self.url(node) + "/health/ready", timeout=5) as r:
            return int(json.loads(r.read())["sessions"])

    def log(self, node: str) -> str:
        return self.servers[node].log.read_text(encoding="utf-8", errors="replace")


def _spawn(
    node: str, port: int, nodes: dict[str, str], home: Path
) -> tuple[contextlib.ExitStack, SpawnedServer]:
    """Media node ``node`` on ``port``, ready; close the stack to stop it."""
    stack = contextlib.ExitStack()
    env = {
        "AVATAR_RTC_CLUSTER__NODE_ID": node,
        "AVATAR_RTC_CLUSTER__NODES": json.dumps(nodes),
        "AVATAR_RTC_CLUSTER__FORWARD_TIMEOUT_S": "3",  # a relayed socket outlives it
        "AVATAR_RTC_ACCESS__TOKEN_SECRET": SECRET,
        "AVATAR_RTC_CLUSTER__SHARED_STATE": SHARED_STATE,  # the real local Redis
        "AVATAR_RTC_API_KEY": API_KEY,
        "AVATAR_RTC_DATA_DIR": str(home / "data"),
        "AVATAR_RTC_CACHE__DIR": str(home / "cache"),
        "AVATAR_RTC_ASR__LANGUAGES": '["en"]',  # English only: a faster start
        "AVATAR_RTC_TTS__ZH_ENGINE": "espeak",
    }
    server = stack.enter_context(
        spawn_server(
            args=("--avatars-dir", str(home / "avatars")),
            env=env,
            port=port,
            log=ARTIFACTS / f"media-nodes-{node}.log",
            cwd=ROOT,
        )
    )
    return stack, server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    ports = {node: free_port() for node in (*NODES, DOWN)}
    nodes = {node: f"http://127.0.0.1:{port}" for node, port in ports.items()}
    with ThreadPoolExecutor(len(NODES)) as pool:  # both start at once
        futures = {
            n: pool.submit(_spawn, n, ports[n], nodes, tmp_path_factory.mktemp(n)) for n in NODES
        }
        wait(futures.values())
    started = {n: f.result() for n, f in futures.items() if f.exception() is None}
    try:
        for future in futures.values():
            future.result()  # raises a node's start error (the other is stopped below)
        yield Cluster({n: server for n, (_, server) in started.items()})
    finally:
        for stack, _ in started.values():
            stack.close()


async def _until(check: Callable[[], bool], *, within_s: float) -> bool:
    """Poll ``check`` (blocking: run on a thread) until it holds or ``within_s`` passes."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return True
        await asyncio.sleep(0.2)
    return bool(await asyncio.to_thread(check))


def _other(node: str) -> str:
    return NODES[1] if node == NODES[0] else NODES[0]


@contextlib.asynccontextmanager
async def _proxy(cluster: Cluster) -> AsyncIterator[RoundRobinProxy]:
    async with RoundRobinProxy([cluster.url(n) for n in NODES]) as proxy:
        yield proxy


async def test_a_bot_call_through_a_round_robin_proxy(cluster: Cluster) -> None:
    async with _proxy(cluster) as proxy:
        report = await run_bot(
            BotOptions(
                url=proxy.url,
                text=QUESTION,
                api_key=API_KEY,
                timeout_s=60,  # generous: this machine is shared
                report=ARTIFACTS / "media-nodes-bot.json",
            )
        )
        # the routing is under test here; lip motion (which a loaded shared machine can
        # starve of frames) is the end-to-end tests' subject
        assert not [e for e in report.errors if "mouth" not in e], report.errors
        assert report.reply_audio_s is not None and report.reply_audio_s > 1.0
        assert report.session is not None
        owner = node_of(report.session)
        assert owner in NODES
        routed = {path: NODES[i] for _, path, i in proxy.routes}
        # the access token came from one node and started the call on the other, whose
        # socket the proxy sent to the first one
        assert routed["/session"] == _other(owner)
        assert routed["/offer"] == owner and routed["/ws"] == _other(owner)
        assert _relayed(cluster, report.session) == [_other(owner)]
        assert "opening" in report.reply_text.lower() or "open" in report.reply_text.lower()
        assert report.video_frames > 25
        # the bot closed its socket with 1000 on the other node: the owner hung up at once
        # (a call that only lost its peer connection would wait 15 s for a resume)
        assert await _until(lambda: cluster.sessions(owner) == 0, within_s=4.0)


async def _resume_on_the_other_node(
    call: ProbeCall, proxy: RoundRobinProxy | None, owner: str, via: str
) -> None:
    """Resume ``call``; with the round-robin ``proxy`` make sure it lands on the non-owner."""
    if proxy is not None and NODES[len(proxy.routes) % len(NODES)] == owner:
        async with aiohttp.ClientSession() as http, http.get(via + "/health/live") as r:
            assert r.status == 200  # one request, so that the resume is the other node's turn
    start = len(call.events)
    await call.resume()
    if proxy is not None:
        assert proxy.routes[-1][1:] == ("/offer", NODES.index(_other(owner)))
    await call.wait_event("hello", start=start)  # the owner greets the resumed call
    await call.wait_connected()


async def _call_resume_hang_up(
    cluster: Cluster, url: str, proxy: RoundRobinProxy | None
) -> tuple[str, str]:
    """A call through ``url``: greeting, resume, a question, hang-up; (owner, session)."""
    call = ProbeCall(ProbeOptions(url=url, api_key=API_KEY, timeout_s=60))
    try:
        await call.connect()
        owner = node_of(call.session_id)
        assert owner in NODES, call.session_id
        await call.wait_event("hello")
        await call.wait_connected()
        await asyncio.sleep(3.5)  # longer than cluster.forward_timeout_s: the relay stays
        await _resume_on_the_other_node(call, proxy, owner, url)
        reply = await call.ask(QUESTION, wait_end=False)  # events still flow after it
        assert reply
        assert cluster.sessions(owner) == 1
    finally:
        await call.hang_up()  # closes the control socket with 1000
    assert await _until(lambda: cluster.sessions(owner) == 0, within_s=4.0)
    again = ProbeCall(ProbeOptions(url=url, timeout_s=10))
    again.session_id, again.session_token = call.session_id, call.session_token
    with pytest.raises(OfferRefused) as refused:
        await again.resume()
    await again.hang_up()
    assert refused.value.status == 404
    return owner, call.session_id


async def test_resume_and_hang_up_reach_the_owner_through_a_round_robin_proxy(
    cluster: Cluster,
) -> None:
    async with _proxy(cluster) as proxy:
        owner, session = await _call_resume_hang_up(cluster, proxy.url, proxy)
        paths = [path for _, path, _ in proxy.routes]
        assert paths.count("/ws") == 1 and paths.count("/offer") == 3
        assert paths.count("/session") == 1
    assert _relayed(cluster, session) == [_other(owner)]


async def test_an_access_token_starts_one_call_on_any_node(cluster: Cluster) -> None:
    first, second = NODES
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with http.post(cluster.url(first) + "/session", headers=headers) as r:
            assert r.status == 200
            token = str((await r.json())["token"])
    async with ProbeCall(ProbeOptions(url=cluster.url(second), token=token, timeout_s=20)):
        for node in NODES:  # spent on the second node: refused by both
            with pytest.raises(OfferRefused) as refused:
                async with ProbeCall(ProbeOptions(url=cluster.url(node), token=token)):
                    pass
            assert refused.value.status == 401 and "already used" in refused.value.reason


async def test_sessions_of_unknown_or_dead_nodes_get_a_clear_answer(cluster: Cluster) -> None:
    url = cluster.url(NODES[0])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for session, status, words in (
            (f"nosuch_{'0' * 24}", 404, "no media node 'nosuch'"),
            (f"{DOWN}_{'0' * 24}", 502, f"({DOWN}) does not answer"),
        ):
            body = {"sdp": FAKE_SDP, "type": "offer", "session": session, "token": "s1.x"}
            started = time.monotonic()
            async with http.post(url + "/offer", json=body) as r:
                answer = await r.json()
            assert r.status == status and words in answer["error"], answer
            assert time.monotonic() - started < 5.0
        for session, code in ((f"nosuch_{'0' * 24}", 4404), (f"{DOWN}_{'0' * 24}", 4502)):
            ws = await http.ws_connect(url + "/ws", params={"session": session, "token": "s1.x"})
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == code, msg
            await ws.close()


def _nginx_config(cluster: Cluster, port: int, folder: Path) -> Path:
    shipped = (ROOT / "deploy" / "nginx" / "media-nodes.conf").read_text(encoding="utf-8")
    for node in NODES:
        shipped = re.sub(rf"\b{node}:\d+", f"127.0.0.1:{cluster.servers[node].port}", shipped)
    shipped = shipped.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    shipped = shipped.replace("/var/log/nginx/access.log", str(folder / "access.log"))
    (folder / "media-nodes.conf").write_text(shipped, encoding="utf-8")
    main = folder / "nginx.conf"
    temp = folder / "temp"
    temp.mkdir(exist_ok=True)
    main.write_text(
        f"daemon off;\nmaster_process off;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} warn;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n  client_body_temp_path {temp};\n  proxy_temp_path {temp};\n"
        f"  include {folder / 'media-nodes.conf'};\n}}\n",
        encoding="utf-8",
    )
    return main


@contextlib.contextmanager
def _nginx(cluster: Cluster, folder: Path) -> Iterator[str]:
    """The shipped config, on a free port of 127.0.0.1 with the nodes' ports; yields its URL."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        pytest.skip("nginx is not installed (Debian package nginx-light)")
    port = free_port()
    config = _nginx_config(cluster, port, folder)
    check = subprocess.run([nginx, "-t", "-c", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([nginx, "-c", str(config)], stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url + "/health/live", timeout=2) as r:
                    if r.status == 200:
                        break
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _relayed(cluster: Cluster, session: str) -> list[str]:
    """The nodes that relayed ``session``'s control socket to its owner (their logs say)."""
    return [n for n in NODES if f"control socket of session {session} relayed" in cluster.log(n)]


async def test_the_shipped_nginx_config_sends_the_socket_to_the_owner(
    cluster: Cluster, tmp_path: Path
) -> None:
    with _nginx(cluster, tmp_path) as url:
        owner, session = await _call_resume_hang_up(cluster, url, None)
    assert owner in NODES
    assert _relayed(cluster, session) == []  # the socket went straight to its owner
