"""The official weights layout: round trip, and errors that name what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from inference.render.musetalk import (
    EXPECTED_FILES,
    WeightsError,
    build_models,
    load_musetalk,
    save_official_layout,
    tiny_arch,
)
from inference.render.musetalk.audio import AudioEncoder


@pytest.fixture()
def layout(tmp_path: Path) -> Path:
    return save_official_layout(build_models(tiny_arch(), seed=7), tmp_path / "weights")


def test_round_trip_gives_identical_outputs(layout: Path) -> None:
    original = build_models(tiny_arch(), seed=7)
    loaded = load_musetalk(layout, arch=tiny_arch())
    torch.manual_seed(1)
    latents, audio = torch.randn(2, 8, 32, 32), torch.randn(2, 50, 32)
    wave = torch.randn(1, 16000)
    with torch.inference_mode():
        for m in (original, loaded):
            m.unet.eval()
        a = original.unet(latents, 0, encoder_hidden_states=audio).sample
        b = loaded.unet(latents, 0, encoder_hidden_states=audio).sample
        assert torch.equal(a, b)
        assert torch.equal(original.vae.decode(a).sample, loaded.vae.decode(b).sample)
        fa = AudioEncoder(original).encode(wave)
        fb = AudioEncoder(loaded).encode(wave)
        assert torch.equal(fa, fb)
    assert (layout / "musetalkV15/unet.pth").is_file()
    assert (layout / "whisper/preprocessor_config.json").is_file()


def test_missing_files_are_all_named(tmp_path: Path) -> None:
    (tmp_path / "musetalkV15").mkdir()
    with pytest.raises(WeightsError) as info:
        load_musetalk(tmp_path, arch=tiny_arch())
    text = str(info.value)
    for rel in EXPECTED_FILES:
        assert str(tmp_path / rel.split("|")[0]) in text
    assert len(info.value.problems) == len(EXPECTED_FILES)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not a directory"):
        load_musetalk(tmp_path / "nope", arch=tiny_arch())


def test_wrong_config_is_named(layout: Path) -> None:
    path = layout / "musetalkV15/musetalk.json"
    cfg = json.loads(path.read_text())
    cfg["cross_attention_dim"] = 768
    path.write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match=r"musetalk\.json: cross_attention_dim is 768"):
        load_musetalk(layout, arch=tiny_arch())


def test_mismatched_and_missing_tensors_are_named(layout: Path) -> None:
    path = layout / "musetalkV15/unet.pth"
    state = torch.load(path, weights_only=True)
    state["conv_in.weight"] = torch.zeros(3, 3, 3, 3)
    del state["conv_out.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(WeightsError) as info:
        load_musetalk(layout, arch=tiny_arch())
    text = str(info.value)
    assert "unet.pth: 1 mismatched tensors: conv_in.weight" in text
    assert "1 missing tensors: conv_out.bias" in text
    assert "1 unexpected tensors: extra.weight" in text


def test_corrupt_tensor_file_is_named(layout: Path) -> None:
    (layout / "whisper/pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"whisper/pytorch_model\.bin: cannot read tensors"):
        load_musetalk(layout, arch=tiny_arch())


def test_whisper_keys_without_encoder_prefix_are_reported(layout: Path) -> None:
    path = layout / "whisper/pytorch_model.bin"
    state = torch.load(path, weights_only=True)
    torch.save({k.replace("model.encoder.", "decoder."): v for k, v in state.items()}, path)
    with pytest.raises(WeightsError, match="missing tensors"):
        load_musetalk(layout, arch=tiny_arch())
