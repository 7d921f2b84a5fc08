"""The pieces of the render cluster that need no Ray: what crosses the network per frame
(the patch), admission, the replica's core on the CPU, and the ``render.cluster`` setting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inference.cluster.admission import decide
from inference.cluster.replica import ReplicaCore, ReplicaOptions
from inference.cluster.wire import (
    RenderRequest,
    ReplicaReport,
    cluster_avatar_name,
    cycle_index,
    decode_patch,
    encode_patch,
    paste,
    patch_boxes,
)
from inference.render.musetalk import FrameJob
from signaling.config import ConfigError, Settings, load_settings
from signaling.preflight import startup_problems
from tests.inference.musetalk_helpers import engine, make_avatar, speech_like


def test_the_blend_changes_no_pixel_outside_the_patch() -> None:
    """Rendered frames differ from their source frame only inside ``patch_boxes``: pasting
    the patch into the source frame gives the rendered frame back exactly."""
    eng = engine()
    avatar = make_avatar()
    boxes = patch_boxes(avatar)
    arch = eng.models.arch
    gen = torch.Generator().manual_seed(1)
    jobs = [
        FrameJob(avatar.name, i, torch.randn(10 * arch.audio_layers, arch.audio_dim, generator=gen))
        for i in range(avatar.num_frames)
    ]
    frames = eng.run_batch(jobs)
    for i, frame in enumerate(frames):
        changed = np.any(frame != avatar.frames[i], axis=2)
        assert changed.any(), "the render changed nothing"
        x0, y0, x1, y1 = boxes[i]
        outside = changed.copy()
        outside[y0:y1, x0:x1] = False
        assert not outside.any(), f"frame {i}: pixels changed outside the patch box"
        patch = encode_patch(frame, boxes[i], frame_no=i, source=i, encoding="raw")
        assert np.array_equal(paste(avatar.frames[i], patch), frame)
        area = (x1 - x0) * (y1 - y0)
        assert area < 0.5 * frame.shape[0] * frame.shape[1]  # a part of the frame, not all


def test_jpeg_patches_are_small_and_close() -> None:
    import cv2

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (10, 12, 3), np.uint8)
    smooth = cv2.resize(small, (96, 80), interpolation=cv2.INTER_CUBIC)  # a face-like smoothness
    patch = encode_patch(smooth, np.array([8, 8, 72, 56]), frame_no=0, source=0, quality=90)
    assert patch.encoding == "jpeg" and patch.shape == (48, 64)
    assert patch.nbytes < 48 * 64 * 3 / 2
    back = decode_patch(patch).astype(int)
    assert np.abs(back - smooth[8:56, 8:72].astype(int)).mean() < 4


def test_source_frames_play_ping_pong() -> None:
    assert [cycle_index(i, 3) for i in range(6)] == [0, 1, 2, 1, 0, 1]
    assert cycle_index(7, 1) == 0
    a = make_avatar()
    assert cluster_avatar_name(a) != cluster_avatar_name(make_avatar(seed=1)) or not a.source_hash


def test_requests_refuse_bad_audio() -> None:
    with pytest.raises(ValueError, match="int16"):
        RenderRequest(call="c", avatar="a", avatar_ref=None, audio=np.zeros(10, np.float32))


def _report(name: str, headroom: float, healthy: bool = True) -> ReplicaReport:
    return ReplicaReport(
        replica=name,
        calls=1,
        capacity_fps=100.0,
        committed_fps=90 - headroom,
        headroom_fps=headroom,
        demand_fps=0.0,
        healthy=healthy,
    )


def test_admission_needs_one_replica_with_room_for_a_call() -> None:
    room = [_report("a", 4.0), _report("b", 10.5)]
    assert decide(room, reachable=True, call_fps=25, talk_share=0.4) is None
    full = decide(room[:1], reachable=True, call_fps=25, talk_share=0.4)
    assert full is not None and full.retry_after_s > 0 and "full" in full.reason
    sick = decide([_report("b", 50.0, healthy=False)], reachable=True, call_fps=25, talk_share=0.4)
    assert sick is not None and "no render replica" in sick.reason
    lost = decide(room, reachable=False, call_fps=25, talk_share=0.4)
    assert lost is not None and "unreachable" in lost.reason


def test_replica_core_renders_patches_and_counts_its_budget() -> None:
    core = ReplicaCore(
        ReplicaOptions(
            random_weights=True,
            arch="tiny",
            compile=False,
            device="cpu",
            max_batch=4,
            capacity_fps=50.0,
            warm_size=(160, 128),
            stall_floor_s=60.0,
        )
    )
    try:
        avatar = make_avatar()
        name = cluster_avatar_name(avatar)
        core.add_avatar(avatar, name)
        req = RenderRequest(call="c1", avatar=name, avatar_ref=None, audio=speech_like(0.4))
        import asyncio

        async def run() -> list[int]:
            got: list[int] = []
            async for patches in core.render(req):
                got.extend(p.frame for p in patches)
            return got

        assert asyncio.run(run()) == list(range(10))
        report = core.report()
        assert report.calls == 1 and report.capacity_fps == 50.0
        assert report.committed_fps >= 0.4 * 25  # its talk share at least
        assert report.headroom_fps == pytest.approx(0.9 * 50.0 - report.committed_fps)
        assert core.release("c1") and core.report().calls == 0
    finally:
        core.close()


def test_replica_needs_weights_or_says_random() -> None:
    with pytest.raises(ValueError, match="weights_dir"):
        ReplicaCore(ReplicaOptions(arch="tiny", compile=False, device="cpu"))
    with pytest.raises(ValueError, match="unknown replica options"):
        ReplicaOptions.from_mapping({"wieghts_dir": "/x"})


def test_render_cluster_setting_and_its_env_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().render.cluster is None  # embedded by default
    s = Settings(render={"renderer": "musetalk", "cluster": "ray://head:10001"})
    assert s.render.cluster == "ray://head:10001"
    with pytest.raises(ValueError, match="not a cluster address"):
        Settings(render={"renderer": "musetalk", "cluster": "http://head/x"})
    with pytest.raises(ValueError, match="renders MuseTalk"):
        Settings(render={"cluster": "head:6379"})
    config = tmp_path / "c.yaml"
    config.write_text("render:\n  renderer: musetalk\n  cluster: ray://a:10001\n")
    monkeypatch.setenv("AVATAR_RTC_RENDER_CLUSTER", "ray://b:10001")
    assert load_settings(config).render.cluster == "ray://b:10001"  # env over file
    monkeypatch.setenv("AVATAR_RTC_RENDER_CLUSTER", "nonsense")
    with pytest.raises(ConfigError, match=r"render\.cluster"):
        load_settings(config)


def test_config_check_of_a_media_node_needs_no_gpu_or_weights() -> None:
    s = Settings(render={"renderer": "musetalk", "cluster": "ray://head:10001"})
    assert not [p for p in startup_problems(s) if p.startswith(("render.", "render "))]


def test_a_ray_client_address_is_refused_with_the_reason() -> None:
    from inference.cluster.connection import ClusterOptions, ClusterUnavailable, RenderCluster

    with pytest.raises(ClusterUnavailable, match="Ray Client"):
        RenderCluster(ClusterOptions(address="ray://127.0.0.1:1")).connect()


def test_autoscaling_asks_for_replicas_by_frame_budget() -> None:
    from inference.cluster.autoscale import desired_replicas

    assert desired_replicas([], []) is None  # no capacity measured: keep what runs
    assert desired_replicas([0.0], [600.0]) == 1
    # 60 calls committing 10 frames/s each on 600 frames/s replicas (540 usable): 2
    assert desired_replicas([300.0, 300.0], [600.0, 600.0]) == 2
    assert desired_replicas([600.0, 600.0], [600.0, 600.0]) == 3  # full: one more
