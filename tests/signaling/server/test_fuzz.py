"""Hostile input: hypothesis fuzzes ``/offer``, ``/session`` and the control WebSocket.

Every input must get a 4xx answer or a clean close (1008, 1009, 44xx), never a 500, an
internal-error close (1011) or a hang (each exchange is bounded by a timeout), and every
message the server sends must be strict JSON (no NaN or Infinity). Inputs include deep
nesting, non-finite numbers and lone surrogates (``\\ud800``). The server
runs on its own event loop thread so the synchronous hypothesis tests can drive it. The
number of cases run is printed.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCConfiguration, RTCPeerConnection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.client.loadgen import ProbeCall, ProbeOptions
from signaling.config import Settings
from signaling.server.app import STATE, create_app
from signaling.stages.services import Services

T = TypeVar("T")
EXCHANGE_TIMEOUT_S = 10.0
CLEAN_CLOSES = {1008, 1009, 4401, 4403, 4404, 4409}
# aiortc draws from ``random`` on the server's thread while hypothesis generates: not ours
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
FUZZ = settings(
    max_examples=800,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@dataclass
class Harness:
    loop: asyncio.AbstractEventLoop
    url: str
    app: Any
    server: TestServer
    http: aiohttp.ClientSession
    sdp_lines: list[str]
    call: ProbeCall
    counts: dict[str, int] = field(default_factory=dict)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run on the server's loop; a hang fails the test."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(EXCHANGE_TIMEOUT_S)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


@pytest.fixture
def harness(fake_services: Services, capsys: pytest.CaptureFixture[str]) -> Iterator[Harness]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    base = Settings(host="127.0.0.1", port=0, max_sessions=50)
    limits = {"requests_per_s": 1e4, "request_burst": 100000, "messages_per_s": 1e4}
    config = base.model_copy(update={"access": base.access.model_copy(update=limits)})

    async def setup() -> Harness:
        app = create_app(config, services=fake_services)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        url = f"http://127.0.0.1:{server.port}"
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("audio", direction="sendrecv")
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        lines = pc.localDescription.sdp.splitlines()
        await pc.close()
        call = ProbeCall(ProbeOptions(url=url, timeout_s=EXCHANGE_TIMEOUT_S))
        await call.connect()
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=EXCHANGE_TIMEOUT_S))
        return Harness(loop, url, app, server, http, lines, call)

    h = asyncio.run_coroutine_threadsafe(setup(), loop).result(60)
    try:
        yield h
    finally:

        async def teardown() -> None:
            await h.http.close()
            await h.call.hang_up()
            await h.server.close()

        asyncio.run_coroutine_threadsafe(teardown(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        with capsys.disabled():
            print(f"\n  fuzz cases: {h.counts}", flush=True)


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
lone_surrogates = st.sampled_from(["\ud800", "x\udfff", "\udc00\ud800", "\udbff!"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | lone_surrogates,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def deep_json(max_depth: int) -> st.SearchStrategy[str]:
    """Arrays or objects nested past the server's limit (32), some past Python's recursion."""
    return st.integers(33, max_depth).flatmap(
        lambda n: st.sampled_from(
            [
                "[" * n + "]" * n,
                "[" * n,
                '{"a":' * n + "1" + "}" * n,
                '{"type":"ping","t":' + "[" * n + "]" * n + "}",
            ]
        )
    )


def _strict(name: str) -> None:
    raise AssertionError(f"the server sent {name}, which is not JSON")


@st.composite
def sdp_mutants(draw: st.DrawFn, lines: list[str]) -> str:
    out = list(lines)
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["drop", "dup", "insert", "garble"]))
        i = draw(st.integers(0, len(out) - 1)) if out else 0
        if action == "drop" and out:
            out.pop(i)
        elif action == "dup" and out:
            out.insert(i, out[i])
        elif action == "insert":
            out.insert(i, draw(st.sampled_from("vmacbt")) + "=" + draw(header_text))
        elif out:
            out[i] = out[i][: draw(st.integers(0, len(out[i])))] + draw(header_text)
    return "\r\n".join(out) + "\r\n"


def offer_bodies(lines: list[str]) -> st.SearchStrategy[bytes]:
    keyed = st.fixed_dictionaries(
        {},
        optional={
            "sdp": st.one_of(sdp_mutants(lines), st.text(max_size=200), json_values),
            "type": st.one_of(st.just("offer"), st.just("answer"), json_values),
            "avatar": st.one_of(st.just("astronaut"), st.text(max_size=80), json_values),
            "language": st.one_of(st.sampled_from(["en", "zh", "fr"]), json_values),
            "token": st.one_of(header_text, json_values),
            "session": st.one_of(header_text, json_values),
            "extra": json_values,
        },
    )
    near_valid = st.fixed_dictionaries(
        {"sdp": sdp_mutants(lines), "type": st.just("offer")},
        optional={"avatar": st.just("astronaut"), "language": st.sampled_from(["en", "zh"])},
    )
    as_json = st.one_of(keyed, near_valid, json_values).map(lambda v: json.dumps(v).encode())
    huge = st.integers(70_000, 200_000).map(lambda n: b'{"sdp": "' + b"v" * n + b'"}')
    deep = deep_json(20_000).map(str.encode)
    return st.one_of(as_json, as_json, as_json, st.binary(max_size=600), huge, deep)


async def _post(h: Harness, path: str, body: bytes, headers: dict[str, str]) -> int:
    async with h.http.post(h.url + path, data=body, headers=headers) as r:
        await r.read()
        return r.status


async def _close_all(sessions: list[Any]) -> None:
    await asyncio.gather(*(s.close() for s in sessions))


def _headers(auth: str | None, origin: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    if origin is not None:
        headers["Origin"] = origin
    return headers


def test_fuzz_offer(harness: Harness) -> None:
    h = harness

    @FUZZ
    @given(
        body=offer_bodies(h.sdp_lines),
        auth=st.none() | header_text.map(lambda t: "Bearer " + t),
        origin=st.none() | st.just(h.url) | header_text,
    )
    def case(body: bytes, auth: str | None, origin: str | None) -> None:
        status = h.run(_post(h, "/offer", body, _headers(auth, origin)))
        h.count("/offer")
        assert status == 200 or 400 <= status < 500, status
        if status == 200:
            h.count("/offer accepted")
            sessions = h.app[STATE].sessions
            extra = [s for sid, s in sessions.items() if sid != h.call.session_id]
            h.run(_close_all(extra))

    case()
    assert h.call.session_id in h.app[STATE].sessions  # the live call was never disturbed


def test_fuzz_session(harness: Harness) -> None:
    h = harness

    @FUZZ
    @given(
        body=st.one_of(
            st.binary(max_size=300),
            json_values.map(lambda v: json.dumps(v).encode()),
            deep_json(3000).map(str.encode),
        ),
        auth=st.none() | header_text,
        key=st.none() | header_text,
        origin=st.none() | st.just(h.url) | header_text,
    )
    def case(body: bytes, auth: str | None, key: str | None, origin: str | None) -> None:
        headers = _headers(auth, origin)
        if key is not None:
            headers["X-API-Key"] = key
        status = h.run(_post(h, "/session", body, headers))
        h.count("/session")
        assert status == 200 or 400 <= status < 500, status

    case()


def ws_messages() -> st.SearchStrategy[str | bytes]:
    typed = st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(["text", "interrupt", "ping"]), json_values)},
        optional={"text": st.one_of(st.text(max_size=300), json_values), "t": json_values},
    )
    non_finite = st.sampled_from(["1e999", "-1e999", "NaN", "-Infinity", "1" + "0" * 400])
    return st.one_of(
        typed.map(json.dumps),
        json_values.map(json.dumps),
        st.text(max_size=300),
        st.binary(max_size=300),
        st.integers(9_000, 100_000).map(lambda n: "x" * n),
        deep_json(4000),
        non_finite.map(lambda t: '{"type": "ping", "t": ' + t + "}"),
    )


async def _ws_exchange(
    h: Harness, message: str | bytes, seen: list[dict[str, Any]] | None = None
) -> int | None:
    """Send ``message`` on a fresh socket of the live call, then a ping: a pong (None) or
    the socket's close code (-1: dropped without a close frame). Every message received
    must be strict JSON; ``seen`` collects them."""
    query = {"session": h.call.session_id, "token": h.call.session_token}
    async with h.http.ws_connect(h.url + "/ws", params=query) as ws:
        if isinstance(message, bytes):
            await ws.send_bytes(message)
        else:
            await ws.send_str(message)
        if not ws.closed:
            await ws.send_json({"type": "ping", "t": 7})
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            event = json.loads(msg.data, parse_constant=_strict)
            if seen is not None:
                seen.append(event)
            if event.get("type") == "pong" and event.get("t") == 7:
                await ws.close(code=4000)  # leave without hanging up (1000 would)
                return None
        return ws.close_code if ws.close_code is not None else -1


def test_fuzz_websocket_messages(harness: Harness) -> None:
    h = harness

    @FUZZ
    @given(message=ws_messages())
    def case(message: str | bytes) -> None:
        code = h.run(_ws_exchange(h, message))
        h.count("ws message")
        assert code is None or code in CLEAN_CLOSES, code
        assert h.call.session_id in h.app[STATE].sessions

    case()
    assert h.call.session_id in h.app[STATE].sessions


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        ("[" * 4000 + "]" * 4000, "nested deeper than 32"),  # within the message size
        ('{"type": "text", "text": ' + "[" * 40 + "]" * 40 + "}", "nested deeper than 32"),
        ('{"type": "text", "text": "\\ud800"}', "lone surrogate"),
        ('{"type": "text", "text": "hi \\udfff"}', "lone surrogate"),
        ('{"type": "ping", "t": 1e999}', "finite number"),
        ('{"type": "ping", "t": NaN}', "not valid JSON"),
        ('{"type": "ping", "t": Infinity}', "not valid JSON"),
    ],
)
def test_hostile_ws_messages_get_an_error_and_events_keep_flowing(
    harness: Harness, message: str, needle: str
) -> None:
    seen: list[dict[str, Any]] = []
    assert harness.run(_ws_exchange(harness, message, seen)) is None  # the pong came
    errors = [str(e.get("reason")) for e in seen if e.get("type") == "error"]
    assert any(needle in reason for reason in errors), seen
    assert harness.run(_ws_exchange(harness, '{"type": "ping"}')) is None


async def _ws_query(h: Harness, session: str, token: str) -> int | None:
    try:
        async with h.http.ws_connect(
            h.url + "/ws", params={"session": session, "token": token}
        ) as ws:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.close(code=4000)
                return None
            return ws.close_code
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status


def test_fuzz_websocket_query(harness: Harness) -> None:
    h = harness

    @settings(FUZZ, max_examples=200)
    @given(
        session=st.one_of(st.just(h.call.session_id), header_text),
        token=st.one_of(st.just(h.call.session_token), header_text),
    )
    def case(session: str, token: str) -> None:
        valid = session == h.call.session_id and token == h.call.session_token
        code = h.run(_ws_query(h, session, token))
        h.count("ws query")
        if not valid:
            assert code in (4401, 4404), code
        else:
            assert code is None

    case()
