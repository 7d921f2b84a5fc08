"""media.aiortc_hooks: every hook exists in the installed aiortc, a changed aiortc is named
hook by hook, and no other product module reaches into aiortc's or aioice's internals."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender

from media import aiortc_hooks
from media.aiortc_hooks import (
    AIORTC_VERSION,
    Swap,
    check_hooks,
    receiver_remb_estimator,
    sender_counts,
    sender_encoder,
    sender_ssrc,
    set_sender_encoder,
    transceiver_codecs,
)

ROOT = Path(__file__).resolve().parents[2]


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def check_layout() -> ModuleType:
    return _load(ROOT / "scripts" / "check_layout.py", "check_layout")


def test_every_hook_exists_in_the_installed_aiortc() -> None:
    problems = check_hooks()
    assert problems == [], "aiortc/aioice changed under media/aiortc_hooks.py:\n" + "\n".join(
        problems
    )


def _receiver_init_without_slots(self: RTCRtpReceiver, kind: str, transport: object) -> None:
    self._enabled = True


async def _send_rtp_changed(self: RTCDtlsTransport, data: bytes, flush: bool) -> None:
    return None


@pytest.mark.parametrize(
    ("owner", "attr", "value", "hook"),
    [
        (RTCRtpSender, "_retransmit", None, "wrap_retransmit: RTCRtpSender._retransmit"),
        (
            RTCRtpReceiver,
            "__init__",
            _receiver_init_without_slots,
            "set_receiver_jitter_buffer: RTCRtpReceiver._RTCRtpReceiver__jitter_buffer",
        ),
        (
            RTCDtlsTransport,
            "_send_rtp",
            _send_rtp_changed,
            "swap_send_rtp, send_rtp: RTCDtlsTransport._send_rtp takes (self, data, flush)",
        ),
    ],
    ids=["method-gone", "slot-gone", "signature-changed"],
)
def test_a_changed_aiortc_is_named_hook_by_hook(
    monkeypatch: pytest.MonkeyPatch, owner: type, attr: str, value: object, hook: str
) -> None:
    if value is None:
        monkeypatch.delattr(owner, attr)
    else:
        monkeypatch.setattr(owner, attr, value)
    problems = check_hooks()
    assert any(p.startswith(hook) for p in problems), problems
    assert len(problems) <= 2, problems  # only what changed (a receiver has two slots)


def test_another_aiortc_version_fails_the_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.9.9")
    with pytest.raises(ImportError, match=rf"{re.escape(AIORTC_VERSION)}.*9\.9\.9"):
        _load(Path(aiortc_hooks.__file__), "aiortc_hooks_copy")


def test_the_version_checked_is_the_one_pinned() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert f"aiortc=={AIORTC_VERSION}" in pyproject["project"]["dependencies"]


async def test_the_hooks_read_a_fresh_peers_slots() -> None:
    pc = RTCPeerConnection()
    try:
        tr = pc.addTransceiver("video")
        assert sender_encoder(tr.sender) is None
        assert sender_counts(tr.sender) == (0, 0)
        assert isinstance(sender_ssrc(tr.sender), int)
        assert transceiver_codecs(tr) == []  # nothing negotiated yet
        assert receiver_remb_estimator(tr.receiver) is not None
        marker = object()
        set_sender_encoder(tr.sender, marker)
        assert sender_encoder(tr.sender) is marker
    finally:
        set_sender_encoder(tr.sender, None)
        await pc.close()


class _Transport:
    async def _send_rtp(self, data: bytes) -> None:
        return None


async def test_a_swap_restores_only_its_own_replacement() -> None:
    transport = _Transport()
    original = transport._send_rtp

    async def first(data: bytes) -> None:
        await outer.inner(data)

    async def second(data: bytes) -> None:
        await inner.inner(data)

    outer = Swap(transport, "_send_rtp", first)
    inner = Swap(transport, "_send_rtp", second)
    assert outer.inner == original and inner.inner is first
    outer.restore()  # not in place: the later swap stays
    assert transport._send_rtp is second
    inner.restore()
    outer.restore()
    assert transport._send_rtp == original


def test_no_product_module_reaches_into_aiortc(check_layout: ModuleType) -> None:
    findings = check_layout.check_private_deps(ROOT)
    assert findings == [], "use media/aiortc_hooks.py instead:\n" + "\n".join(findings)


def test_the_scanner_sees_each_kind_of_reach(check_layout: ModuleType) -> None:
    source = (
        "import aioice.ice\n"
        "enc = sender._RTCRtpSender__encoder\n"  # 2: a mangled slot
        "codecs = getattr(tr, '_codecs', [])\n"  # 3: a private name through getattr
        "slot = '_RTCRtpReceiver__jitter_buffer'\n"  # 4: a mangled name in a string
        "aioice.ice.get_host_addresses = f\n"  # 5: a patched module
        "ssrc = self._ssrc\n"  # own attribute: fine
        "env = 'AVATAR_RTC_ACCESS__KEYS'\n"  # a setting, not a mangled name: fine
        "pos = buffer._pos\n"  # not an aiortc name: fine
    )
    private = check_layout.dependency_private_names()
    found = check_layout.private_accesses(source, private)
    assert [line for line, _ in found] == [2, 3, 4, 5], found


def test_check_layout_main_prints_findings_and_fails(
    check_layout: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "signaling").mkdir()
    (tmp_path / "signaling" / "peer.py").write_text("ok = 1\nssrc = sender._ssrc\n")
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "aiortc_hooks.py").write_text("ssrc = sender._ssrc\n")  # allowed
    assert check_layout.main(["private-deps", "--root", str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "signaling/peer.py:2: attribute ._ssrc: aiortc/aioice internals go through "
        "media/aiortc_hooks.py"
    ]
    with pytest.raises(SystemExit):
        check_layout.main(["no-such-check"])
    assert "unknown check" in capsys.readouterr().err
