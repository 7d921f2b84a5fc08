"""Mandarin end to end: the real server, the real bot, real models, questions in voices the
product does not speak with (Kokoro styles other than its own).

- a spoken Mandarin question gets the Mandarin FAQ answer, spoken, with moving lips;
- code-switched Mandarin ("我想查一下我的order的状态") is understood;
- a whole spoken call makes no network attempt (counted by the kernel, not by Python);
- silence, music and a language the model does not know get no reply or a polite one, no
  error, and the server goes on answering.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import ClientSession

from inference.dialogue import FaqDialogueOptions, make_dialogue
from inference.dialogue.faq import FaqDialogue
from inference.dialogue.text import contains_cjk
from signaling.client.bot import BotOptions, BotReport, run_bot
from tests.harness.netns import unavailable_reason
from tests.harness.voices import Voice, VoiceUnavailable, kokoro_code_switched, speak

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
RATE = 16000

ZH_VOICE = "kokoro-jf_nezumi"
# A Mandarin Kokoro style the product does not speak with: its English "order" is one
# Whisper base keeps as a Latin word (when 的 follows it).
CODE_SWITCH_VOICE = "kokoro-zf_xiaobei"
GERMAN = Voice("espeak-de-150", "de", "espeak", "de", 150)

HOURS_ZH = "你们的营业时间是几点？"
SHIPPING_ZH = "发货要多久？"


# -- helpers ------------------------------------------------------------------------------------


def squashed(text: str) -> str:
    """``text`` without whitespace: the bot joins a reply's sentences with spaces."""
    return "".join(text.split())


def faq() -> FaqDialogue:
    dialogue = make_dialogue(FaqDialogueOptions())
    assert isinstance(dialogue, FaqDialogue)
    return dialogue


def expected_zh_answer(question: str, entry_id: str) -> str:
    """The knowledge base's Mandarin answer to ``question`` (which must hit ``entry_id``)."""
    dialogue = faq()
    found = dialogue.match(question, "zh")
    assert found is not None and found[0] == entry_id, found
    text, language = dialogue.answer_text(question, "zh")
    assert language == "zh"
    return squashed(text)


def zh_fallback() -> str:
    return squashed(faq().index.knowledge_base.fallback["zh"])


def write_wav(path: Path, pcm: np.ndarray, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, np.int16).tobytes())
    return path


def music(seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """A plucked melody over a sustained C major chord, a little noise: music, not speech."""
    t = np.arange(int(seconds * RATE)) / RATE
    notes = np.repeat([261.6, 329.6, 392.0, 523.3], t.size // 4 + 1)[: t.size]
    chord = sum(np.sin(2 * np.pi * f * t) for f in (130.8, 164.8, 196.0)) * 0.2
    x = np.sin(2 * np.pi * notes * t) * np.exp(-3 * (t % 0.5)) + chord
    x = x + np.random.default_rng(seed).normal(0, 0.01, t.size)
    return np.asarray(x / np.abs(x).max() * 20000, np.int16)


def turn_events(report: BotReport, kind: str) -> list[dict[str, Any]]:
    """Events of ``kind`` of the question's turn (the greeting is turn 1)."""
    return [e for e in report.events if e.get("type") == kind and e.get("turn") == report.turn]


def after_question(report: BotReport, kind: str) -> list[dict[str, Any]]:
    """Events of ``kind`` that arrived once the question went on air."""
    start = report.question_start_ms or 0.0
    return [e for e in report.events if e.get("type") == kind and (e.get("t_ms") or 0) >= start]


def server_errors(report: BotReport) -> list[str]:
    """Error events from the server and the control socket's abnormal closes."""
    events = [str(e) for e in report.events if e.get("type") == "error"]
    return events + [e for e in report.errors if e.startswith(("server error", "control socket"))]


@pytest.fixture(scope="module")
def say(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Any], Path]:
    """``say(name, pcm_or_maker) -> Path``: a 16 kHz WAV, made once per module."""
    folder = tmp_path_factory.mktemp("zh-questions")

    def make(name: str, source: Any) -> Path:
        path = folder / f"{name}.wav"
        if not path.exists():
            try:
                pcm = source() if callable(source) else source
            except VoiceUnavailable as exc:
                pytest.skip(f"test voice unavailable: {exc}")
            write_wav(path, pcm)
        return path

    return make


# -- 1. a spoken Mandarin question --------------------------------------------------------------


async def test_mandarin_question_gets_the_mandarin_answer_with_moving_lips(
    server: str, say: Callable[[str, Any], Path]
) -> None:
    audio = say("hours-zh", lambda: speak(ZH_VOICE, HOURS_ZH))
    report = await run_bot(
        BotOptions(
            url=server,
            audio=audio,
            language="zh",
            report=ARTIFACTS / "e2e-zh-opening-hours.json",
            timeout_s=40,
        )
    )
    assert not report.errors, report.errors
    # Heard as Mandarin (Simplified characters), answered from the Mandarin knowledge base.
    assert report.transcript is not None and "营业时间" in report.transcript, report.transcript
    (heard,) = turn_events(report, "transcript")
    assert heard["language"] == "zh", heard
    assert squashed(report.reply_text) == expected_zh_answer(HOURS_ZH, "opening_hours")
    replies = turn_events(report, "reply_text")
    assert replies and all(e["language"] == "zh" for e in replies), replies
    # Spoken, at a video rate, and the lips follow the voice.
    assert report.reply_audio_s is not None and report.reply_audio_s > 1.0
    assert report.video_fps is not None and report.video_fps >= 20.0, report.video_fps
    assert report.mouth_audio_correlation is not None
    assert report.mouth_audio_correlation_control is not None
    assert report.mouth_audio_correlation > report.mouth_audio_correlation_control + 0.2


# -- 2. code-switched Mandarin ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "parts", "keeps_english"),
    [
        pytest.param(
            "order-de",
            [("我想查一下我的", "zh"), ("order", "en"), ("的状态", "zh")],
            True,
            id="order-de",
        ),
        # The issue's own wording. Whisper base hears no English word in it from any of the
        # eleven Kokoro test styles ("order" glued to 状态 comes out 偶的, 博的, 味的...), so
        # only the Chinese and the answer are checked.
        pytest.param(
            "order-glued",
            [("我想查一下我的", "zh"), ("order", "en"), ("状态", "zh")],
            False,
            id="order-glued",
        ),
    ],
)
async def test_code_switched_question_is_understood(
    server: str,
    say: Callable[[str, Any], Path],
    name: str,
    parts: list[tuple[str, str]],
    keeps_english: bool,
) -> None:
    text = "".join(p for p, _ in parts)
    audio = say(name, lambda: kokoro_code_switched(CODE_SWITCH_VOICE, parts))
    report = await run_bot(
        BotOptions(
            url=server,
            audio=audio,
            report=ARTIFACTS / f"e2e-zh-{name}.json",
            timeout_s=40,
        )
    )
    assert not report.errors, report.errors
    heard = report.transcript
    assert heard is not None and "一下" in heard and "状态" in heard, heard
    if keeps_english:
        assert "order" in heard.lower(), heard
    (event,) = turn_events(report, "transcript")
    assert event["language"] == "zh", event
    # The order-status answer, in Mandarin (the page's language was left at its default).
    assert squashed(report.reply_text) == expected_zh_answer(text, "order_status")
    assert all(e["language"] == "zh" for e in turn_events(report, "reply_text"))
    assert report.reply_audio_s is not None and report.reply_audio_s > 1.0


# -- 3. no network attempt during a call --------------------------------------------------------

_NS_V4 = ("10.253.0.1/30", "10.253.0.2/30")
_NS_V6 = ("fd00:253::1/64", "fd00:253::2/64")
_PROBE = """
import socket, sys
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"probe", ("192.0.2.1", 9))
except OSError:
    pass  # dropped on its way out: EPERM
try:
    socket.getaddrinfo("example.com", 443)
except OSError:
    pass
"""
_READY = """
import os, sys, time, urllib.request
url, pid, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"the server (pid {pid}) exited")
    try:
        with urllib.request.urlopen(url + "/health/ready", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.3)
sys.exit("the server was not ready in time")
"""


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)


def _offline_unavailable() -> str | None:
    reason = unavailable_reason(("ip", "iptables", "ip6tables"))
    if reason is not None:
        return reason
    probe = f"avrtc-offprobe-{os.getpid()}"
    _sh("ip", "netns", "add", probe)
    try:
        res = _sh("ip", "netns", "exec", probe, "iptables", "-L", "OUTPUT", "-n")
        if res.returncode != 0:
            return f"iptables does not work in a namespace here: {res.stderr.strip()}"
    finally:
        _sh("ip", "netns", "del", probe)
    return None


@dataclass(frozen=True, slots=True)
class Egress:
    """Packets that tried to leave the namespace (on any interface but ``lo``, to an address
    that is not the namespace's own), by kind."""

    total: int
    by_kind: dict[str, int]


class OfflineNamespace:
    """A network namespace that looks online and counts every attempt to go out.

    A veth pair (both ends inside) carries IPv4 and IPv6 default routes, so a connection, a
    datagram or a DNS query (``resolv.conf`` names 192.0.2.53 inside) leaves the process as a
    packet; ``iptables``/``ip6tables`` count and drop each one that is not for ``lo`` or one
    of the namespace's own addresses. The kernel's own IPv6 housekeeping (neighbour and
    router discovery, MLD) is ICMPv6 and not counted.
    """

    CHAIN = "EGRESS"
    KINDS = (
        ("dns", ("-p", "udp", "--dport", "53")),
        ("tcp", ("-p", "tcp")),
        ("udp", ("-p", "udp")),
    )

    def __init__(self) -> None:
        self.name = f"avrtc-offline-{os.getpid()}"
        self._etc = Path("/etc/netns") / self.name
        self._made_etc_netns = False
        self._open = False

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def _in(self, *argv: str) -> str:
        res = _sh(*self.command(list(argv)))
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed in {self.name}: {res.stderr.strip()}")
        return res.stdout

    def __enter__(self) -> OfflineNamespace:
        try:
            self._setup()
        except Exception:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _setup(self) -> None:
        self._made_etc_netns = not self._etc.parent.exists()
        self._etc.mkdir(parents=True, exist_ok=True)
        (self._etc / "resolv.conf").write_text("nameserver 192.0.2.53\n")
        res = _sh("ip", "netns", "add", self.name)
        if res.returncode != 0:
            raise RuntimeError(f"ip netns add {self.name}: {res.stderr.strip()}")
        self._open = True
        self._in("ip", "link", "set", "lo", "up")
        self._in("ip", "link", "add", "avoff0", "type", "veth", "peer", "name", "avoff1")
        for dev, v4, v6 in zip(("avoff0", "avoff1"), _NS_V4, _NS_V6, strict=True):
            self._in("ip", "addr", "add", v4, "dev", dev)
            self._in("ip", "-6", "addr", "add", v6, "dev", dev, "nodad")
            self._in("ip", "link", "set", dev, "up")
        self._in("ip", "route", "add", "default", "dev", "avoff0")
        self._in("ip", "-6", "route", "add", "default", "dev", "avoff0")
        for tool in ("iptables", "ip6tables"):
            self._in(tool, "-N", self.CHAIN)
            if tool == "ip6tables":
                self._in(tool, "-A", self.CHAIN, "-p", "ipv6-icmp", "-j", "RETURN")
            for kind, match in self.KINDS:
                self._in(tool, "-A", self.CHAIN, *match, "-m", "comment", "--comment", kind)
            self._in(tool, "-A", self.CHAIN, "-j", "DROP")
            self._in(
                tool, "-A", "OUTPUT", "!", "-o", "lo",
                "-m", "addrtype", "!", "--dst-type", "LOCAL", "-j", self.CHAIN,
            )  # fmt: skip

    def egress(self) -> Egress:
        total = 0
        by_kind = dict.fromkeys([k for k, _ in self.KINDS], 0)
        for tool in ("iptables", "ip6tables"):
            out = self._in(tool, "-L", self.CHAIN, "-v", "-x", "-n")
            for line in out.splitlines()[2:]:
                fields = line.split()
                if not fields or not fields[0].isdigit():
                    continue
                packets = int(fields[0])
                if fields[2] == "DROP":
                    total += packets
                for kind in by_kind:
                    if f"/* {kind} */" in line:
                        by_kind[kind] += packets
        return Egress(total, by_kind)

    def zero(self) -> None:
        for tool in ("iptables", "ip6tables"):
            self._in(tool, "-Z", self.CHAIN)

    def close(self) -> None:
        if self._open:
            _sh("ip", "netns", "del", self.name)
            self._open = False
        shutil.rmtree(self._etc, ignore_errors=True)
        if self._made_etc_netns:
            try:
                self._etc.parent.rmdir()
            except OSError:
                pass


@contextlib.contextmanager
def serve_inside(ns: OfflineNamespace, log: Path, avatars: Path) -> Iterator[str]:
    """``avatar-rtc serve`` inside ``ns`` on its loopback until the block ends; its URL
    (reachable from inside ``ns`` only). SIGTERM at the end, SIGKILL after 15 s."""
    port = 8080  # the namespace is fresh: nothing else listens in it
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "signaling.cli", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--avatars-dir", str(avatars)]
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(ns.command(cmd), cwd=ROOT, env=env, stdout=out, stderr=out)
        try:
            ready = subprocess.run(
                ns.command([sys.executable, "-c", _READY, url, str(proc.pid), "180"]),
                capture_output=True,
                text=True,
                timeout=200,
            )
            if ready.returncode != 0:
                tail = log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"{ready.stderr.strip()}; the end of {log}:\n{tail}")
            yield url
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def test_a_spoken_call_makes_no_network_attempt(
    say: Callable[[str, Any], Path], tmp_path: Path
) -> None:
    """Server and bot in a namespace with a default route: not one packet leaves it.

    Python's audit hooks would miss what C++ libraries do on their own (onnxruntime,
    CTranslate2, mediapipe); the kernel's packet counters see every process.
    """
    reason = _offline_unavailable()
    if reason is not None:
        pytest.skip(f"cannot count packets in a network namespace: {reason}")
    question = say("shipping-zh", lambda: speak(ZH_VOICE, SHIPPING_ZH))
    report_path = ARTIFACTS / "e2e-zh-offline.json"
    report_path.unlink(missing_ok=True)
    with OfflineNamespace() as ns:
        # The counters can fail the test: a datagram and a DNS lookup from inside count.
        subprocess.run(ns.command([sys.executable, "-c", _PROBE]), check=True, timeout=30)
        probe = ns.egress()
        assert probe.by_kind["udp"] >= 2 and probe.by_kind["dns"] >= 1, probe
        assert probe.total == probe.by_kind["udp"] + probe.by_kind["tcp"], probe
        ns.zero()
        assert ns.egress().total == 0
        with serve_inside(ns, ARTIFACTS / "e2e-zh-offline-server.log", tmp_path) as url:
            bot = [sys.executable, "-m", "signaling.cli", "bot", "--url", url]
            bot += ["--audio", str(question), "--language", "zh", "--timeout-s", "40"]
            bot += ["--report", str(report_path)]
            done = subprocess.run(
                ns.command(bot), cwd=ROOT, capture_output=True, text=True, timeout=150
            )
        egress = ns.egress()  # the server has stopped: its shutdown counts too
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    # It was a whole call: heard, answered, spoken.
    assert "多久" in (report["transcript"] or ""), report["transcript"]
    assert squashed(report["reply_text"]) == expected_zh_answer(SHIPPING_ZH, "shipping_times")
    assert report["reply_audio_s"] is not None and report["reply_audio_s"] > 1.0
    assert egress.total == 0, f"packets tried to leave during the call: {egress}"


# -- 4. bad input -------------------------------------------------------------------------------

# Whisper base hears a language it was not asked for (here German) as unsure English (see
# docs/asr.md), and the reply follows the transcript's language: a zh caller is answered in
# English, sometimes with an FAQ answer. Set to None once a zh call says sorry in Mandarin.
FOREIGN_SPEECH_DEFECT: str | None = (
    "product defect: unknown-language speech on a zh call is answered in English "
    "(Whisper hears it as unsure English; the reply follows the transcript's language)"
)


@pytest.mark.parametrize(
    ("name", "sound"),
    [
        pytest.param("silence", lambda: np.zeros(3 * RATE, np.int16), id="silence"),
        pytest.param("music", music, id="music"),
        pytest.param("german", lambda: speak(GERMAN, "Wie sind Ihre Öffnungszeiten?"), id="german"),
    ],
)
async def test_bad_input_gets_no_reply_or_a_polite_one_and_the_server_goes_on(
    server: str, say: Callable[[str, Any], Path], name: str, sound: Callable[[], np.ndarray]
) -> None:
    audio = say(f"bad-{name}", sound)
    report = await run_bot(
        BotOptions(
            url=server,
            audio=audio,
            language="zh",
            listen_s=7.0,  # a reply, if any, has begun by then
            report=ARTIFACTS / f"e2e-zh-bad-{name}.json",
            timeout_s=40,
        )
    )
    assert report.question_start_ms is not None, report.errors
    assert not server_errors(report), server_errors(report)
    said_by_turn: dict[Any, str] = {}
    for e in after_question(report, "reply_text"):
        said_by_turn[e.get("turn")] = said_by_turn.get(e.get("turn"), "") + squashed(e["text"])
    # The server is alive; after the input that went through the whole reply path (foreign
    # speech: transcribed, answered) the next caller is answered as usual. (Silence and music
    # stop at the ASR; the other tests' calls on this server follow them.)
    async with ClientSession() as http, http.get(server + "/health/ready") as r:
        assert r.status == 200
    if name == "german":
        follow = await run_bot(
            BotOptions(
                url=server,
                audio=say("shipping-zh", lambda: speak(ZH_VOICE, SHIPPING_ZH)),
                language="zh",
                report=ARTIFACTS / f"e2e-zh-after-{name}.json",
                timeout_s=40,
            )
        )
        assert not follow.errors, follow.errors
        assert squashed(follow.reply_text) == expected_zh_answer(SHIPPING_ZH, "shipping_times")
    # No reply, or the polite fallback in the caller's language (the page's: zh).
    said = " ".join(str(e["text"]) for e in after_question(report, "reply_text"))
    if name == "german" and FOREIGN_SPEECH_DEFECT and said and not contains_cjk(said):
        pytest.xfail(f"{FOREIGN_SPEECH_DEFECT}; heard {report.transcript!r}, said {said!r}")
    polite = zh_fallback()
    assert all(turn == polite for turn in said_by_turn.values()), (report.transcript, said)
