"""Architecture descriptions of MuseTalk v1.5: the official one and a tiny one for CPU tests.

Both go through exactly the same construction code; only the sizes differ. The official
numbers are the public v1.5 release's (see DESIGN.md): a diffusers ``UNet2DConditionModel``
with 8 input channels and 384-d cross attention, the ``sd-vae-ft-mse`` ``AutoencoderKL`` and
the whisper-tiny encoder with all 5 hidden states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CROP_SIZE",
    "LATENT_SCALE",
    "MuseTalkArch",
    "official_arch",
    "tiny_arch",
]

CROP_SIZE = 256  # face crop side in pixels; the latent is CROP_SIZE // 8
LATENT_SCALE = 0.18215  # sd-vae-ft-mse scaling factor

_DOWN = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
_UP = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")


@dataclass(frozen=True, slots=True)
class MuseTalkArch:
    """Constructor arguments of the three networks plus the audio front end.

    ``unet``, ``vae`` and ``whisper`` are keyword dictionaries for
    ``UNet2DConditionModel``, ``AutoencoderKL`` and ``WhisperConfig``; ``mel`` for
    ``WhisperFeatureExtractor`` (``chunk_length`` seconds is the encoder's input length).
    """

    name: str
    unet: dict[str, Any] = field(hash=False)
    vae: dict[str, Any] = field(hash=False)
    whisper: dict[str, Any] = field(hash=False)
    mel: dict[str, Any] = field(hash=False)

    def __post_init__(self) -> None:
        if self.unet.get("in_channels") != 8 or self.unet.get("out_channels") != 4:
            raise ValueError("MuseTalk UNet needs in_channels=8 and out_channels=4")
        if self.vae.get("latent_channels", 4) != 4:
            raise ValueError("MuseTalk VAE needs latent_channels=4")
        if self.unet.get("cross_attention_dim") != self.whisper.get("d_model"):
            raise ValueError(
                "UNet cross_attention_dim must equal the whisper encoder's d_model "
                f"({self.unet.get('cross_attention_dim')} != {self.whisper.get('d_model')})"
            )
        mel_frames = int(self.mel["chunk_length"]) * 16000 // int(self.mel.get("hop_length", 160))
        if mel_frames != 2 * int(self.whisper["max_source_positions"]):
            raise ValueError(
                f"mel chunk_length {self.mel['chunk_length']} s gives {mel_frames} mel frames; "
                f"the encoder wants {2 * int(self.whisper['max_source_positions'])}"
            )

    @property
    def audio_dim(self) -> int:
        """Width of one audio token (whisper d_model)."""
        return int(self.whisper["d_model"])

    @property
    def audio_layers(self) -> int:
        """Hidden states used per feature frame: the embedding output plus every layer."""
        return int(self.whisper["encoder_layers"]) + 1

    @property
    def window_seconds(self) -> float:
        """Length of audio one encoder call sees."""
        return float(self.mel["chunk_length"])


def official_arch() -> MuseTalkArch:
    """The public MuseTalk v1.5 architecture."""
    return MuseTalkArch(
        name="musetalk-v1.5",
        unet={
            "sample_size": 64,
            "in_channels": 8,
            "out_channels": 4,
            "block_out_channels": (320, 640, 1280, 1280),
            "layers_per_block": 2,
            "cross_attention_dim": 384,
            "attention_head_dim": 8,
            "down_block_types": _DOWN,
            "up_block_types": _UP,
            "norm_num_groups": 32,
        },
        vae={
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "block_out_channels": (128, 256, 512, 512),
            "layers_per_block": 2,
            "latent_channels": 4,
            "norm_num_groups": 32,
            "sample_size": 256,
            "scaling_factor": LATENT_SCALE,
        },
        whisper={
            "d_model": 384,
            "encoder_layers": 4,
            "encoder_attention_heads": 6,
            "encoder_ffn_dim": 1536,
            "decoder_layers": 4,
            "decoder_attention_heads": 6,
            "decoder_ffn_dim": 1536,
            "num_mel_bins": 80,
            "max_source_positions": 1500,
            "vocab_size": 51865,
        },
        mel={"feature_size": 80, "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30},
    )


def tiny_arch() -> MuseTalkArch:
    """A few-hundred-kilobyte version with the same structure, for CPU tests."""
    return MuseTalkArch(
        name="musetalk-tiny",
        unet={
            "sample_size": 32,
            "in_channels": 8,
            "out_channels": 4,
            "block_out_channels": (8, 8, 16, 16),
            "layers_per_block": 1,
            "cross_attention_dim": 32,
            "attention_head_dim": 4,
            "down_block_types": _DOWN,
            "up_block_types": _UP,
            "norm_num_groups": 4,
        },
        vae={
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "block_out_channels": (4, 4, 8, 8),
            "layers_per_block": 1,
            "latent_channels": 4,
            "norm_num_groups": 2,
            "sample_size": 256,
            "scaling_factor": LATENT_SCALE,
        },
        whisper={
            "d_model": 32,
            "encoder_layers": 4,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "decoder_layers": 1,
            "decoder_attention_heads": 2,
            "decoder_ffn_dim": 64,
            "num_mel_bins": 80,
            "max_source_positions": 100,
            "vocab_size": 51865,
        },
        mel={"feature_size": 80, "sampling_rate": 16000, "hop_length": 160, "chunk_length": 2},
    )
