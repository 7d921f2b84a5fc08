"""ICE helpers: loopback host candidates for calls on 127.0.0.1.

aioice leaves 127.0.0.1 out of its host candidates, so on a host whose only interface is
loopback (a kiosk talking to a local server, CI) no candidate pair would ever form. Serving
or calling a loopback address turns loopback candidates on for this process.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlparse

__all__ = ["enable_loopback_candidates", "is_loopback_host", "rtc_configuration"]


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
    from media.aiortc_hooks import offer_loopback_host_address  # (aiortc only where called)

    offer_loopback_host_address()


def rtc_configuration(ice_servers: list[dict[str, Any]]) -> Any:
    """An RTCConfiguration with exactly these ICE servers (none means no STUN lookups)."""
    from aiortc import RTCConfiguration, RTCIceServer

    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in ice_servers
    ]
    return RTCConfiguration(iceServers=servers)
