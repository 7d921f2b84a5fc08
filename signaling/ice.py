"""ICE helpers: loopback host candidates for calls on 127.0.0.1.

aioice leaves 127.0.0.1 out of its host candidates, so on a host whose only interface is
loopback (a kiosk talking to a local server, CI) no candidate pair would ever form. Serving
or calling a loopback address turns loopback candidates on for this process.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import aioice.ice

__all__ = ["enable_loopback_candidates", "is_loopback_host", "rtc_configuration"]

_MARK = "_avatar_rtc_loopback"


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost (a URL is accepted too)."""
    if "://" in host:
        host = urlparse(host).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def enable_loopback_candidates() -> None:
    """Make aioice offer 127.0.0.1 besides the other host addresses (idempotent)."""
    current: Callable[..., list[str]] = aioice.ice.get_host_addresses
    if getattr(current, _MARK, False):
        return

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = list(current(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses

    setattr(with_loopback, _MARK, True)
    aioice.ice.get_host_addresses = with_loopback  # type: ignore[assignment]


def rtc_configuration(ice_servers: list[dict[str, Any]]) -> Any:
    """An RTCConfiguration with exactly these ICE servers (none means no STUN lookups)."""
    from aiortc import RTCConfiguration, RTCIceServer

    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in ice_servers
    ]
    return RTCConfiguration(iceServers=servers)
