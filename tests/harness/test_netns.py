"""tc tbf on a veth pair in a namespace the test creates: the rate is what we asked for."""

import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.harness.netns import TbfNamespace, TbfOptions, unavailable_reason

pytestmark = pytest.mark.timeout(60)

_RECEIVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(1.5)
print("ready", flush=True)
n, first, last = 0, None, None
try:
    while True:
        data = s.recv(2048)
        now = time.monotonic()
        first = first or now
        last = now
        n += len(data)
except socket.timeout:
    pass
print(n, (last or 0) - (first or 0), flush=True)
"""


def _receiver(ns: TbfNamespace, port: int) -> subprocess.Popen[str]:
    """A UDP receiver inside the namespace, ready; it prints its bytes and span at the end."""
    proc = subprocess.Popen(
        ns.command([sys.executable, "-c", _RECEIVER, ns.ns_addr, str(port)]),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _measure(ns: TbfNamespace, port: int, *, seconds: float, offered_bps: int) -> float:
    proc = _receiver(ns, port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"x" * 1000
    t0 = time.monotonic()
    sent = 0
    while time.monotonic() - t0 < seconds:
        if sent * 8 < offered_bps * (time.monotonic() - t0):
            sock.sendto(payload, (ns.ns_addr, port))
            sent += len(payload)
        else:
            time.sleep(0.001)
    sock.close()
    out, _ = proc.communicate(timeout=10)
    n, span = out.split()
    return int(n) * 8 / max(float(span), 1e-3)


def test_tbf_caps_the_rate_and_lifts() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"tc tbf in a network namespace is not available: {reason}")
    with TbfNamespace() as ns:
        ns.shape(TbfOptions(rate_bps=400_000, burst_bytes=5000, latency_s=0.2))
        capped = _measure(ns, 40001, seconds=2.0, offered_bps=1_200_000)
        assert 320_000 < capped < 480_000, capped
        ns.shape(None)
        free = _measure(ns, 40002, seconds=1.0, offered_bps=1_200_000)
        assert free > 1_000_000, free


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="rate_bps"):
        TbfOptions(rate_bps=10)
    with pytest.raises(ValueError, match="burst_bytes"):
        TbfOptions(rate_bps=100_000, burst_bytes=100)


def _received_share(ns: TbfNamespace, port: int, packets: int) -> float:
    proc = _receiver(ns, port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(packets):
        sock.sendto(b"x" * 200, (ns.ns_addr, port))
        time.sleep(0.002)
    sock.close()
    out, _ = proc.communicate(timeout=10)
    return int(out.split()[0]) / (200 * packets)


def test_lose_drops_that_share_and_lifts() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"a network namespace is not available: {reason}")
    if shutil.which("iptables") is None:
        pytest.skip("iptables is not installed (scripts/setup.sh installs it with apt)")
    with TbfNamespace() as ns:
        ns.lose(0.25)
        lossy = _received_share(ns, 40003, 400)
        assert 0.62 < lossy < 0.88, lossy  # 75 % expected; 400 packets: +-5 % is 2.3 sd
        ns.lose(None)
        assert _received_share(ns, 40004, 200) > 0.97
        with pytest.raises(ValueError, match="share"):
            ns.lose(1.5)
