"""MuseTalk architecture: configs, construction, shapes, positional encoding."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from musetalk_helpers import tiny_models

from inference.render.musetalk import official_arch, tiny_arch
from inference.render.musetalk.model import positional_encoding


def test_official_arch_is_musetalk_v15() -> None:
    arch = official_arch()
    assert arch.unet["in_channels"] == 8 and arch.unet["out_channels"] == 4
    assert arch.unet["block_out_channels"] == (320, 640, 1280, 1280)
    assert arch.unet["cross_attention_dim"] == 384 and arch.unet["attention_head_dim"] == 8
    assert arch.unet["layers_per_block"] == 2
    assert arch.unet["down_block_types"] == ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    assert arch.unet["up_block_types"] == ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    assert arch.audio_layers == 5 and arch.audio_dim == 384
    assert arch.window_seconds == 30


def test_arch_rejects_inconsistent_sizes() -> None:
    arch = tiny_arch()
    with pytest.raises(ValueError, match="cross_attention_dim"):
        dataclasses.replace(arch, unet={**arch.unet, "cross_attention_dim": 64})
    with pytest.raises(ValueError, match="in_channels=8"):
        dataclasses.replace(arch, unet={**arch.unet, "in_channels": 4})
    with pytest.raises(ValueError, match="mel frames"):
        dataclasses.replace(arch, mel={**arch.mel, "chunk_length": 3})


def test_tiny_models_shapes() -> None:
    m = tiny_models()
    arch = m.arch
    with torch.inference_mode():
        latents = torch.randn(2, 8, 32, 32)
        audio = torch.randn(2, 10 * arch.audio_layers, arch.audio_dim)
        out = m.unet(latents, 0, encoder_hidden_states=audio).sample
        assert out.shape == (2, 4, 32, 32)
        image = m.vae.decode(out).sample
        assert image.shape == (2, 3, 256, 256)
        mel = torch.randn(1, 80, 2 * arch.whisper["max_source_positions"])
        hidden = m.whisper(mel, output_hidden_states=True).hidden_states
        assert len(hidden) == arch.audio_layers
        assert hidden[0].shape == (1, arch.whisper["max_source_positions"], arch.audio_dim)


def test_positional_encoding_values() -> None:
    pe = positional_encoding(50, 384)
    assert pe.shape == (50, 384)
    assert pe[0, 0] == 0.0 and pe[0, 1] == 1.0
    assert math.isclose(float(pe[1, 0]), math.sin(1.0), rel_tol=1e-6)
    div = math.exp(-2 * math.log(10000.0) / 384)
    assert math.isclose(float(pe[3, 3]), math.cos(3 * div), rel_tol=1e-6)
    with pytest.raises(ValueError):
        positional_encoding(10, 7)
