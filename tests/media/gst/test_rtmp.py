"""RTMP to a real server started by the test (nginx with its RTMP module), played back."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from media.gst.congestion import parse_rtmp_stats
from media.gst.output import Backoff, OutputRunner
from media.gst.pipelines import OutputSpec
from tests.media.gst.receiver import RtmpPlayer, free_tcp_port
from tests.media.gst.synthetic import BurstSource

_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None or not _MODULE.is_file(),
    reason="nginx with its RTMP module (apt: nginx-light libnginx-mod-rtmp) is not installed",
)


class Nginx:
    """An RTMP server on 127.0.0.1 that can be stopped and started again."""

    def __init__(self, folder: Path) -> None:
        self.port = free_tcp_port()
        self.folder = folder
        self.conf = folder / "nginx.conf"
        self.conf.write_text(
            f"load_module {_MODULE};\ndaemon off;\nmaster_process off;\n"
            f"pid {folder}/nginx.pid;\nerror_log {folder}/error.log info;\n"
            "events {}\n"
            f"rtmp {{ server {{ listen 127.0.0.1:{self.port}; chunk_size 4096;\n"
            "  application live { live on; record off; } } }\n"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            ["nginx", "-p", str(self.folder), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import socket

        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen: {(self.folder / 'error.log').read_text()}")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    server = Nginx(tmp_path)
    server.start()
    yield server
    server.stop()


def test_rtmp_push_through_a_server_that_goes_away(nginx: Nginx, bursts: BurstSource) -> None:
    url = f"rtmp://127.0.0.1:{nginx.port}/live/avatar"
    spec = OutputSpec(url=url, width=256, height=256, video_bps=400_000)
    runner = OutputRunner(spec, bursts, backoff=Backoff(first_s=0.2, max_s=1.0))
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    player = RtmpPlayer(url, keep_frames=False)
    try:
        time.sleep(1.0)  # the push is up before the viewer asks for it
        player.start()
        assert player.wait_frames(50, timeout=20.0), "no video played back"
        stats = parse_rtmp_stats(runner.pipeline.get_by_name("sink").get_property("stats"))
        assert stats.bytes_sent > 0 and stats.backlog_bytes is not None
        player.stop()
        nginx.stop()  # the ingest goes away ...
        time.sleep(1.5)
        nginx.start()  # ... and comes back
        time.sleep(1.5)
        player = RtmpPlayer(url, keep_frames=False)
        player.start()
        assert player.wait_frames(25, timeout=20.0), "no video after the server came back"
    finally:
        stop.set()
        thread.join(timeout=15)
        player.stop()
    t = player.got.video_times()
    assert abs(float(np.median(np.diff(t))) - 0.04) < 1e-3
    kinds = [e.kind for e in runner.events]
    assert "dropped" in kinds and kinds.count("playing") >= 2
    assert "rung" not in kinds  # a clean link: no backlog, so the quality stays at the top
