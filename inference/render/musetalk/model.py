"""Construction of the MuseTalk networks from diffusers and transformers.

``MuseTalkModels`` holds the three networks of one process (loaded once, shared by every
call): the UNet, the VAE and the whisper encoder, plus the mel front end's filter bank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from inference.render.musetalk.config import MuseTalkArch

__all__ = ["MuseTalkModels", "build_models", "positional_encoding"]


def positional_encoding(length: int, dim: int) -> torch.Tensor:
    """The standard sinusoidal table (``length`` x ``dim``): sin on even, cos on odd columns."""
    if length <= 0 or dim <= 0 or dim % 2:
        raise ValueError(f"positional encoding needs positive length and even dim, got {dim}")
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div)
    return table.float()


@dataclass(slots=True)
class MuseTalkModels:
    """The networks of one process, in eval mode, on one device and dtype."""

    arch: MuseTalkArch
    # diffusers' lazily imported classes are opaque to mypy: typed by use, not by class
    unet: Any  # UNet2DConditionModel
    vae: Any  # AutoencoderKL
    whisper: WhisperEncoder
    feature_extractor: WhisperFeatureExtractor

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def to(
        self,
        device: torch.device | str,
        dtype: torch.dtype | None = None,
        *,
        channels_last: bool = False,
    ) -> MuseTalkModels:
        """Move every network (in place) and return self.

        The whisper encoder stays float32 on the CPU, where half precision is slow.
        """
        dev = torch.device(device)
        dtype = dtype or self.dtype
        whisper_dtype = dtype if dev.type == "cuda" else torch.float32
        pairs: tuple[tuple[torch.nn.Module, torch.dtype], ...] = (
            (self.unet, dtype),
            (self.vae, dtype),
            (self.whisper, whisper_dtype),
        )
        for module, want in pairs:
            if next(module.parameters()).dtype == want:
                module.to(device=dev)
            else:
                module.to(device=dev, dtype=want)
        fmt = (
            torch.channels_last if dev.type == "cuda" and channels_last else torch.contiguous_format
        )
        self.unet.to(memory_format=fmt)
        self.vae.to(memory_format=fmt)
        return self

    def mel_filters(self) -> np.ndarray:
        """(n_freq, n_mels) float32 filter bank of the whisper front end."""
        return np.asarray(self.feature_extractor.mel_filters, dtype=np.float32)


def _whisper_config(arch: MuseTalkArch) -> WhisperConfig:
    return WhisperConfig(**arch.whisper)


def build_models(arch: MuseTalkArch, *, seed: int | None = 0) -> MuseTalkModels:
    """Build the networks with random weights (float32, CPU, eval mode).

    ``load_musetalk`` builds the same way and then loads the official weights.
    """
    if seed is not None:
        torch.manual_seed(seed)
    unet: Any = UNet2DConditionModel(**arch.unet)
    vae: Any = AutoencoderKL(**arch.vae)
    whisper = WhisperEncoder(_whisper_config(arch))
    fe = WhisperFeatureExtractor(**arch.mel)
    modules: tuple[torch.nn.Module, ...] = (unet, vae, whisper)
    for module in modules:
        module.eval()
        module.requires_grad_(False)
    return MuseTalkModels(arch=arch, unet=unet, vae=vae, whisper=whisper, feature_extractor=fe)
