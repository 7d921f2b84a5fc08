"""The kernel's shaper for tests and benchmarks: ``tc tbf`` on a veth pair into a namespace.

:class:`TbfNamespace` creates a private network namespace and a veth pair between it and
the host (addresses in a /30 of 10.200.0.0/16, nothing routed anywhere else), and shapes
the host → namespace direction with a token bucket filter (or drops a share of it at random,
:meth:`TbfNamespace.lose`). A process started with
:meth:`TbfNamespace.command` runs inside the namespace and reaches the host at
``host_addr``. Needs root (CAP_NET_ADMIN) and ``ip``/``tc``; :func:`unavailable_reason` says
why not where it cannot work, for a clean ``pytest.skip``. Everything is removed on
:meth:`close` (the namespace's deletion takes its veth end and the host end with it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["TbfNamespace", "TbfOptions", "unavailable_reason"]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)


def unavailable_reason(tools: tuple[str, ...] = ("ip", "tc")) -> str | None:
    """None when namespaces and ``tools`` (default: tbf's) can be used here, else the reason
    in words."""
    for tool in tools:
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    probe = f"avrtc-probe-{os.getpid()}"
    res = _run("ip", "netns", "add", probe)
    if res.returncode != 0:
        return f"`ip netns add` is not permitted here: {res.stderr.strip()}"
    _run("ip", "netns", "del", probe)
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class TbfOptions:
    """``tc qdisc ... tbf rate R burst B latency L`` (L bounds the queue in time)."""

    rate_bps: int
    burst_bytes: int = 10_000
    latency_s: float = 0.5

    def __post_init__(self) -> None:
        if self.rate_bps < 8_000:
            raise ValueError(f"rate_bps must be >= 8 kbps, got {self.rate_bps}")
        if self.burst_bytes < 1600:
            raise ValueError(f"burst_bytes must be >= 1600 (one MTU), got {self.burst_bytes}")
        if not 0 < self.latency_s <= 10:
            raise ValueError(f"latency_s must be within (0, 10], got {self.latency_s}")


class TbfNamespace:
    """A namespace behind a veth pair whose host → namespace direction can be shaped."""

    def __init__(self, *, index: int | None = None) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"cannot build a tbf namespace: {reason}")
        n = (os.getpid() if index is None else index) % 16000
        self.name = f"avrtc-{n}"
        self._veth = f"avh{n}"
        base = 4 * n  # a /30 per instance inside 10.200.0.0/16
        self.host_addr = f"10.200.{base // 256}.{base % 256 + 1}"
        self.ns_addr = f"10.200.{base // 256}.{base % 256 + 2}"
        self._open = False
        try:
            self._setup()
        except Exception:
            self.close()
            raise

    def _sh(self, *argv: str) -> None:
        res = _run(*argv)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {res.stderr.strip()}")

    def _setup(self) -> None:
        peer = f"{self._veth}p"
        self._sh("ip", "netns", "add", self.name)
        self._open = True
        self._sh("ip", "link", "add", self._veth, "type", "veth", "peer", "name", peer)
        self._sh("ip", "link", "set", peer, "netns", self.name)
        self._sh("ip", "addr", "add", f"{self.host_addr}/30", "dev", self._veth)
        self._sh("ip", "link", "set", self._veth, "up")
        ns = ("ip", "netns", "exec", self.name)
        self._sh(*ns, "ip", "addr", "add", f"{self.ns_addr}/30", "dev", peer)
        self._sh(*ns, "ip", "link", "set", peer, "up")
        self._sh(*ns, "ip", "link", "set", "lo", "up")

    def shape(self, options: TbfOptions | None) -> None:
        """Shape host → namespace traffic (``None`` removes the shaper)."""
        _run("tc", "qdisc", "del", "dev", self._veth, "root")
        if options is None:
            return
        self._sh(
            "tc", "qdisc", "add", "dev", self._veth, "root", "tbf",
            "rate", f"{options.rate_bps}bit",
            "burst", str(options.burst_bytes),
            "latency", f"{round(options.latency_s * 1000)}ms",
        )  # fmt: skip

    def lose(self, share: float | None) -> None:
        """Drop ``share`` of the UDP packets reaching the namespace, at random (``None``:
        none). The kernel's ``statistic`` match through ``iptables`` (this kernel has no
        ``netem``); an error names iptables where it is not installed."""
        if share is not None and not 0 < share < 1:
            raise ValueError(f"share must be within (0, 1), got {share}")
        if shutil.which("iptables") is None:
            raise RuntimeError("`iptables` is not installed (scripts/setup.sh installs it)")
        ns = ("ip", "netns", "exec", self.name)
        self._sh(*ns, "iptables", "-F", "INPUT")
        if share is not None:
            self._sh(
                *ns, "iptables", "-A", "INPUT", "-p", "udp",
                "-m", "statistic", "--mode", "random", "--probability", f"{share:.4f}",
                "-j", "DROP",
            )  # fmt: skip

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` wrapped to run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def close(self) -> None:
        if self._open:
            _run("ip", "netns", "del", self.name)
            _run("ip", "link", "del", self._veth)  # gone with the namespace; just in case
            self._open = False

    def __enter__(self) -> TbfNamespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
