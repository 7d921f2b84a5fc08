"""The one module that reaches into aiortc's and aioice's private internals.

Quality control needs what aiortc keeps private: a sender's encoder slot and byte counts,
its RTCP and retransmission paths, a receiver's jitter buffer and bitrate estimator, the DTLS
transport's RTP send and receive paths, the negotiated codecs, the ICE connection. Every
such access is a small function here; nothing else in the product touches an aiortc or
aioice underscore name (``scripts/check_layout.py`` enforces it). Importing this module
fails on an aiortc other than :data:`AIORTC_VERSION`; :func:`check_hooks` names each hook
the installed aiortc and aioice no longer have (``tests/media/test_aiortc_hooks.py``).

Instance methods are replaced on one object only (:class:`Swap`): other senders and
transports keep aiortc's.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import textwrap
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Generic, TypeVar

import aioice.ice
from aioice import Connection
from aioice.ice import CandidatePair
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import AnyRtcpPacket, HeaderExtensionsMap, RtpPacket

__all__ = [
    "AIORTC_VERSION",
    "HandleRtcp",
    "HandleRtp",
    "SendRtp",
    "Swap",
    "check_hooks",
    "h264_nal_units",
    "h264_payloads",
    "ice_connection",
    "offer_loopback_host_address",
    "packet_payload",
    "receiver_remb_estimator",
    "selected_pair",
    "send_rtp",
    "sender_counts",
    "sender_encoder",
    "sender_header_extensions",
    "sender_rtx_ssrc",
    "sender_ssrc",
    "set_receiver_jitter_buffer",
    "set_receiver_remb_estimator",
    "set_sender_encoder",
    "swap_handle_rtcp_data",
    "swap_handle_rtp_data",
    "swap_send_rtp",
    "transceiver_codecs",
    "vp8_payloads",
    "wrap_retransmit",
    "wrap_sender_rtcp",
]

AIORTC_VERSION = "1.16.0"  # the aiortc these hooks were written for (pyproject pins it)

_found = importlib.metadata.version("aiortc")
if _found != AIORTC_VERSION:
    raise ImportError(
        f"media.aiortc_hooks was written for aiortc {AIORTC_VERSION}, found aiortc {_found}: "
        "run tests/media/test_aiortc_hooks.py, fix the hooks it names, then update "
        "AIORTC_VERSION and the pin in pyproject.toml"
    )

SendRtp = Callable[[bytes], Awaitable[None]]
HandleRtp = Callable[[bytes, int], Awaitable[None]]  # (data, arrival time ms)
HandleRtcp = Callable[[bytes], Awaitable[None]]
F = TypeVar("F", bound=Callable[..., Any])

_ENCODER = "_RTCRtpSender__encoder"
_OCTETS = "_RTCRtpSender__octet_count"
_PACKETS = "_RTCRtpSender__packet_count"
_EXTENSIONS = "_RTCRtpSender__rtp_header_extensions_map"
_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_REMB_ESTIMATOR = "_RTCRtpReceiver__remote_bitrate_estimator"
_LOOPBACK_MARK = "_avatar_rtc_loopback"


class Swap(Generic[F]):
    """Method ``name`` of one object replaced by ``replacement``; :attr:`inner` is what was
    there (call it to pass a call on)."""

    def __init__(self, obj: object, name: str, replacement: F) -> None:
        self._obj, self._name, self._replacement = obj, name, replacement
        self.inner: F = getattr(obj, name)
        setattr(obj, name, replacement)

    def restore(self) -> None:
        """Put :attr:`inner` back, unless another swap replaced ours since."""
        if getattr(self._obj, self._name) == self._replacement:
            setattr(self._obj, self._name, self.inner)


# ---- senders -----------------------------------------------------------------------------


def sender_encoder(sender: RTCRtpSender) -> object | None:
    """The sender's encoder (None until its first frame); RuntimeError without the slot."""
    if not hasattr(sender, _ENCODER):
        raise RuntimeError("this aiortc version has no sender encoder slot to fill")
    return getattr(sender, _ENCODER)


def set_sender_encoder(sender: RTCRtpSender, encoder: object) -> None:
    """Make ``encoder`` the one the sender uses (before its first frame: it makes none then)."""
    setattr(sender, _ENCODER, encoder)


def sender_counts(sender: RTCRtpSender) -> tuple[int, int]:
    """(payload octets, packets) the sender has sent, as its sender reports count them."""
    return getattr(sender, _OCTETS, 0), getattr(sender, _PACKETS, 0)


def sender_header_extensions(sender: RTCRtpSender) -> HeaderExtensionsMap:
    """The header extension ids the sender writes its packets with."""
    extensions: HeaderExtensionsMap = getattr(sender, _EXTENSIONS)
    return extensions


def sender_ssrc(sender: RTCRtpSender) -> int:
    """The SSRC of the sender's media packets."""
    return sender._ssrc


def sender_rtx_ssrc(sender: RTCRtpSender) -> int:
    """The SSRC of the sender's retransmissions (RTX)."""
    return sender._rtx_ssrc


def wrap_sender_rtcp(
    sender: RTCRtpSender,
    *,
    on_received: Callable[[AnyRtcpPacket], None],
    on_sending: Callable[[list[AnyRtcpPacket]], None],
) -> None:
    """Show every RTCP packet reaching ``sender`` to ``on_received`` and every batch it
    sends to ``on_sending``, before aiortc handles or sends them."""
    handle = sender._handle_rtcp_packet
    send = sender._send_rtcp

    async def _handle(packet: AnyRtcpPacket) -> None:
        on_received(packet)
        await handle(packet)

    async def _send(packets: list[AnyRtcpPacket]) -> None:
        on_sending(packets)
        await send(packets)

    sender._handle_rtcp_packet = _handle  # type: ignore[method-assign]
    sender._send_rtcp = _send  # type: ignore[method-assign]


def wrap_retransmit(sender: RTCRtpSender, allow: Callable[[], bool]) -> None:
    """Resend a NACKed packet only when ``allow()`` says so."""
    inner = sender._retransmit

    async def _retransmit(sequence_number: int) -> None:
        if allow():
            await inner(sequence_number)

    sender._retransmit = _retransmit  # type: ignore[method-assign]


# ---- receivers, transceivers, packets ----------------------------------------------------


def set_receiver_jitter_buffer(receiver: RTCRtpReceiver, buffer: object) -> None:
    """Make ``buffer`` (with ``add(packet) -> (pli, frame)``) the receiver's jitter buffer."""
    if not hasattr(receiver, _JITTER_BUFFER):
        raise RuntimeError("this aiortc version has no receiver jitter buffer slot")
    setattr(receiver, _JITTER_BUFFER, buffer)


def receiver_remb_estimator(receiver: RTCRtpReceiver) -> RemoteBitrateEstimator | None:
    """The receive-side bitrate estimator whose REMBs the receiver sends (video only)."""
    estimator: RemoteBitrateEstimator | None = getattr(receiver, _REMB_ESTIMATOR, None)
    return estimator


def set_receiver_remb_estimator(
    receiver: RTCRtpReceiver, estimator: RemoteBitrateEstimator
) -> None:
    """Make ``estimator`` the receiver's receive-side bitrate estimator."""
    setattr(receiver, _REMB_ESTIMATOR, estimator)


def transceiver_codecs(transceiver: RTCRtpTransceiver) -> list[Any]:
    """The negotiated codecs (``RTCRtpCodecParameters``), preferred first; empty before the
    answer is set. (Typed loosely: a negotiated codec's optional ``payloadType`` is set.)"""
    codecs: list[RTCRtpCodecParameters] = getattr(transceiver, "_codecs", [])
    return codecs


def packet_payload(packet: RtpPacket) -> bytes:
    """What a receiver's jitter buffer passes on: the depayloaded data aiortc's receiver
    stores on the packet, else the RTP payload."""
    data: bytes = getattr(packet, "_data", packet.payload)
    return data


# ---- the DTLS and ICE transports ---------------------------------------------------------


def swap_send_rtp(transport: RTCDtlsTransport, replacement: SendRtp) -> Swap[SendRtp]:
    """Send ``transport``'s outgoing RTP and RTCP through ``replacement``."""
    return Swap(transport, "_send_rtp", replacement)


async def send_rtp(transport: RTCDtlsTransport, data: bytes) -> None:
    """Send one RTP or RTCP packet on ``transport`` (through any swap in place)."""
    await transport._send_rtp(data)


def swap_handle_rtp_data(transport: RTCDtlsTransport, replacement: HandleRtp) -> Swap[HandleRtp]:
    """Pass ``transport``'s incoming RTP through ``replacement``."""
    return Swap(transport, "_handle_rtp_data", replacement)


def swap_handle_rtcp_data(transport: RTCDtlsTransport, replacement: HandleRtcp) -> Swap[HandleRtcp]:
    """Pass ``transport``'s incoming RTCP through ``replacement``."""
    return Swap(transport, "_handle_rtcp_data", replacement)


def ice_connection(dtls: RTCDtlsTransport) -> Connection:
    """The aioice connection under a DTLS transport."""
    return dtls.transport._connection


def selected_pair(connection: Connection) -> CandidatePair | None:
    """The connection's nominated candidate pair (None before one is)."""
    return next(iter(connection._nominated.values()), None)


def offer_loopback_host_address(*, only: bool = False) -> None:
    """Make aioice offer 127.0.0.1 besides the other host addresses (idempotent), or as the
    only one (``only``: peers on one host that must not try other interfaces)."""
    if only:
        aioice.ice.get_host_addresses = _loopback_only  # type: ignore[assignment]
        return
    current: Callable[..., list[str]] = aioice.ice.get_host_addresses
    if getattr(current, _LOOPBACK_MARK, False):
        return

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = list(current(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses

    setattr(with_loopback, _LOOPBACK_MARK, True)
    aioice.ice.get_host_addresses = with_loopback  # type: ignore[assignment]


def _loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"] if use_ipv4 else []


# ---- codecs ------------------------------------------------------------------------------


def vp8_payloads(frame: bytes, picture_id: int) -> list[bytes]:
    """One encoded VP8 frame as RTP payloads, as aiortc's VP8 encoder packetizes it."""
    return Vp8Encoder._packetize(frame, picture_id)


def h264_nal_units(bitstream: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex B H.264 bitstream."""
    return H264Encoder._split_bitstream(bitstream)


def h264_payloads(nal_units: Iterable[bytes]) -> list[bytes]:
    """NAL units as RTP payloads, as aiortc's H.264 encoder packetizes them."""
    return H264Encoder._packetize(nal_units)


# ---- the check ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Hook:
    """What the functions ``users`` rely on: ``owner.attr`` is a ``method`` taking
    ``params``, a ``slot`` its ``__init__`` sets on self, or an attribute it ``stores`` on
    some object."""

    users: str
    owner: type | ModuleType
    attr: str
    kind: str
    params: tuple[str, ...] = ()


_HOOKS = (
    _Hook("sender_encoder, set_sender_encoder", RTCRtpSender, _ENCODER, "slot"),
    _Hook("sender_counts", RTCRtpSender, _OCTETS, "slot"),
    _Hook("sender_counts", RTCRtpSender, _PACKETS, "slot"),
    _Hook("sender_header_extensions", RTCRtpSender, _EXTENSIONS, "slot"),
    _Hook("sender_ssrc", RTCRtpSender, "_ssrc", "slot"),
    _Hook("sender_rtx_ssrc", RTCRtpSender, "_rtx_ssrc", "slot"),
    _Hook("wrap_sender_rtcp", RTCRtpSender, "_handle_rtcp_packet", "method", ("self", "packet")),
    _Hook("wrap_sender_rtcp", RTCRtpSender, "_send_rtcp", "method", ("self", "packets")),
    _Hook("wrap_retransmit", RTCRtpSender, "_retransmit", "method", ("self", "sequence_number")),
    _Hook("set_receiver_jitter_buffer", RTCRtpReceiver, _JITTER_BUFFER, "slot"),
    _Hook("receiver_remb_estimator", RTCRtpReceiver, _REMB_ESTIMATOR, "slot"),
    _Hook("transceiver_codecs", RTCRtpTransceiver, "_codecs", "slot"),
    _Hook("packet_payload", RTCRtpReceiver, "_data", "stores"),
    _Hook("swap_send_rtp, send_rtp", RTCDtlsTransport, "_send_rtp", "method", ("self", "data")),
    _Hook(
        "swap_handle_rtp_data",
        RTCDtlsTransport,
        "_handle_rtp_data",
        "method",
        ("self", "data", "arrival_time_ms"),
    ),
    _Hook(
        "swap_handle_rtcp_data", RTCDtlsTransport, "_handle_rtcp_data", "method", ("self", "data")
    ),
    _Hook("ice_connection", RTCIceTransport, "_connection", "slot"),
    _Hook("selected_pair", Connection, "_nominated", "slot"),
    _Hook(
        "offer_loopback_host_address",
        aioice.ice,
        "get_host_addresses",
        "method",
        ("use_ipv4", "use_ipv6"),
    ),
    _Hook("vp8_payloads", Vp8Encoder, "_packetize", "method", ("buffer", "picture_id")),
    _Hook("h264_nal_units", H264Encoder, "_split_bitstream", "method", ("buf",)),
    _Hook("h264_payloads", H264Encoder, "_packetize", "method", ("packages",)),
)


def _stored_attrs(obj: Any, cls_name: str, *, on_self: bool) -> set[str]:
    """Attribute names ``obj``'s source assigns (on ``self`` only, or on any object),
    mangled as inside class ``cls_name``; empty where the source cannot be read."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (OSError, TypeError, SyntaxError):
        return set()
    names = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)):
            continue
        if on_self and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
            continue
        attr = node.attr
        mangle = attr.startswith("__") and not attr.endswith("__")
        names.add(f"_{cls_name.lstrip('_')}{attr}" if mangle else attr)
    return names


def _method_problem(hook: _Hook) -> str | None:
    found = getattr(hook.owner, hook.attr, None)
    if not callable(found):
        return "is missing"
    try:
        params = tuple(inspect.signature(found).parameters)
    except (TypeError, ValueError):
        return "has no readable signature"
    if params != hook.params:
        return f"takes ({', '.join(params)}), the hook expects ({', '.join(hook.params)})"
    return None


def _stored_problem(hook: _Hook) -> str | None:
    owner = hook.owner
    assert isinstance(owner, type), "slots and stored attributes belong to classes"
    if hook.kind == "stores":
        found = _stored_attrs(owner, owner.__name__, on_self=False)
        return None if hook.attr in found else "is missing (no longer stored)"
    init = vars(owner).get("__init__")
    if init is None or hook.attr not in _stored_attrs(init, owner.__name__, on_self=True):
        return "is missing (__init__ no longer sets it)"
    return None


def _problem(hook: _Hook) -> str | None:
    """What is wrong with one hook in the installed aiortc/aioice (None: nothing)."""
    return _method_problem(hook) if hook.kind == "method" else _stored_problem(hook)


def check_hooks() -> list[str]:
    """One line per hook the installed aiortc/aioice no longer has, naming the hook."""
    problems = []
    for hook in _HOOKS:
        owner = hook.owner
        name = owner.__name__ if isinstance(owner, ModuleType) else owner.__qualname__
        if (problem := _problem(hook)) is not None:
            problems.append(f"{hook.users}: {name}.{hook.attr} {problem}")
    return problems
