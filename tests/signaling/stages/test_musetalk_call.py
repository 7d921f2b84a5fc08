"""A whole call with ``renderer: musetalk``: the real session, scheduler and engine on the
CPU with tiny random networks saved in (and loaded from) the official weights layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from inference.render.musetalk import build_models, save_official_layout, tiny_arch
from signaling.client.bot import BotOptions, run_bot
from signaling.config import Settings
from signaling.server.app import create_app
from signaling.stages.musetalk import MusetalkSetupError, musetalk_factory
from signaling.stages.services import Services


def test_clear_errors_without_weights_or_gpu(tmp_path: Path) -> None:
    with pytest.raises(MusetalkSetupError, match="musetalk_dir"):
        musetalk_factory(None)
    with pytest.raises(MusetalkSetupError, match="CUDA GPU"):
        musetalk_factory(tmp_path, devices=())  # empty: like a machine with no GPU


def test_broken_weights_folder_names_the_missing_files(tmp_path: Path) -> None:
    (tmp_path / "musetalkV15").mkdir()
    with pytest.raises(Exception, match=r"unet\.pth"):
        musetalk_factory(tmp_path, devices=("cpu",), compile=False, arch=tiny_arch())


async def test_call_renders_with_musetalk(
    tmp_path: Path, settings: Settings, fake_services: Services
) -> None:
    weights = save_official_layout(build_models(tiny_arch(), seed=3), tmp_path / "weights")
    factory = musetalk_factory(
        weights, devices=("cpu",), compile=False, arch=tiny_arch(), output_height=128
    )
    fake_services.renderers = factory
    factory.warm(fake_services.avatar("astronaut"))
    server = TestServer(create_app(settings, services=fake_services), host="127.0.0.1")
    await server.start_server()
    try:
        url = f"http://127.0.0.1:{server.port}"
        report = await run_bot(BotOptions(url=url, text="Hello there", timeout_s=30))
    finally:
        await server.close()
        factory.service.close()
    # Random weights paint the same mouth whatever the audio: the bot says so, nothing else.
    assert set(report.errors) <= {"the mouth never moved after the question"}, report.errors
    assert report.reply_text.strip() == "We are open from nine to five. See you soon."
    assert report.video_frames > 50
    assert [128, 128] in report.video_sizes  # the MuseTalk renderer's output size


def test_the_decode_setting_reaches_every_engine(tmp_path: Path) -> None:
    weights = save_official_layout(build_models(tiny_arch(), seed=3), tmp_path / "weights")
    assert Settings().render.musetalk_decode == "full"  # exact by default
    factory = musetalk_factory(
        weights, devices=("cpu",), compile=False, arch=tiny_arch(), decode="mask"
    )
    try:
        assert [e.options.decode for e in factory.service.engines] == ["mask"]
    finally:
        factory.service.close()
