"""Which ICE candidates of a caller's offer the server will try (pure).

An offer lists addresses the server then sends connectivity checks to, so a forged one could
aim them elsewhere. ``filter_candidates`` keeps those plausible for the caller and at most
``max_candidates`` destinations; the policy is in docs/protocol.md (Media).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["FilteredOffer", "filter_candidates", "plausible_address"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_CANDIDATE = "a=candidate:"
_END = "a=end-of-candidates"


@dataclass(frozen=True, slots=True)
class FilteredOffer:
    """The offer's SDP without the refused candidates, and how many were kept and dropped."""

    sdp: str
    kept: int
    dropped: int


def _ip(text: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _routable(address: IpAddress) -> bool:
    """Unicast and usable as a destination (no multicast, broadcast, reserved, unspecified)."""
    return not (
        address.is_multicast
        or address.is_unspecified
        or (address.is_reserved and not address.is_loopback)  # 255.255.255.255; ::1 is in ::/8
        or (address.version == 4 and address in _THIS_NETWORK)
    )


def _local(address: IpAddress) -> bool:
    return address.is_private or address.is_link_local


def plausible_address(address: str, peer_ip: str) -> bool:
    """Whether a caller at ``peer_ip`` (the request's TCP peer) may list ``address``: its own
    address; and, for a caller on loopback or a private network, private and link-local
    addresses and mDNS ``.local`` names (loopback ones only for a loopback caller)."""
    peer = _ip(peer_ip)
    if peer is None:
        return False
    near = _local(peer)
    candidate = _ip(address)
    if candidate is None:
        return near and address.lower().rstrip(".").endswith(".local")
    if not _routable(candidate):
        return False
    if candidate == peer:
        return True
    if candidate.is_loopback:
        return peer.is_loopback
    return near and _local(candidate)


def _destination(line: str) -> tuple[str, str, int] | None:
    """(transport, address, port) of an ``a=candidate`` line, None if it is malformed."""
    fields = line[len(_CANDIDATE) :].split()
    if len(fields) < 8 or fields[6] != "typ":
        return None
    try:
        port = int(fields[5])
    except ValueError:
        return None
    if not 0 < port < 65536:
        return None
    return fields[2].lower(), fields[4].lower(), port


def filter_candidates(sdp: str, *, peer_ip: str, max_candidates: int) -> FilteredOffer:
    """Drop the ``a=candidate`` lines a caller at ``peer_ip`` could not plausibly offer, and
    those past ``max_candidates`` distinct destinations. When any is dropped, so is
    ``a=end-of-candidates``: the caller's own checks still reach the server, which then
    learns its real address from them (peer-reflexive) until the connect deadline."""
    lines = sdp.splitlines(keepends=True)
    kept: list[str] = []
    destinations: set[tuple[str, str, int]] = set()
    n_kept = n_dropped = 0
    for line in lines:
        if not line.startswith(_CANDIDATE):
            kept.append(line)
            continue
        dest = _destination(line.rstrip("\r\n"))
        plausible = dest is not None and plausible_address(dest[1], peer_ip)
        if dest is not None and plausible and dest not in destinations:
            plausible = len(destinations) < max_candidates
            if plausible:
                destinations.add(dest)
        if plausible:
            kept.append(line)
            n_kept += 1
        else:
            n_dropped += 1
    if n_dropped:
        kept = [line for line in kept if line.rstrip("\r\n") != _END]
    return FilteredOffer(sdp="".join(kept), kept=n_kept, dropped=n_dropped)
