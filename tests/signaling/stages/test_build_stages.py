"""A new stage backend is one module and one registry line; the stages build from the settings
through the registries, with the fallbacks the sections name."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from inference.asr import OpenAiAsr, ScriptedAsr, WhisperAsr
from inference.fallback import FallbackAsr, FallbackTts
from inference.registry import Backend, BackendSettings
from inference.tts import TTS_BACKENDS, LanguageRouterTts, OpenAiTts, Tts
from inference.types import PcmChunk
from signaling.config import ConfigError, Settings, StageBackends, load_settings
from signaling.stages.services import build_stages

# ---- the one module: what a backend module declares -------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HumTtsOptions:
    pitch_hz: float = 220.0

    def __post_init__(self) -> None:
        if not 50 <= self.pitch_hz <= 1000:
            raise ValueError(f"pitch_hz must be within 50..1000, got {self.pitch_hz}")


class HumTts:
    def __init__(self, options: HumTtsOptions) -> None:
        self.options = options

    async def synthesize(self, text: str, language: str = "en") -> AsyncGenerator[PcmChunk, None]:
        t = np.arange(1600) / 16000
        samples = (np.sin(2 * np.pi * self.options.pitch_hz * t) * 8000).astype(np.int16)
        yield PcmChunk(samples, 16000, final=True)


class HumTtsSettings(BackendSettings):
    backend: Literal["hum"] = "hum"
    pitch_hz: float = 220.0

    def options(self) -> HumTtsOptions:
        return HumTtsOptions(pitch_hz=self.pitch_hz)


BACKEND: Backend[Tts] = Backend(
    name="hum", options=HumTtsOptions, make=HumTts, settings=HumTtsSettings
)

# ---- the one registry line ----------------------------------------------------------------

WITH_HUM = StageBackends(tts=TTS_BACKENDS.plus(BACKEND))

FAKE_REST = "asr:\n  backend: fake\ndialogue:\n  backend: fake\n"


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(FAKE_REST + text)
    return path


async def test_a_new_backend_builds_through_the_configuration(tmp_path: Path) -> None:
    model = Settings.with_backends(WITH_HUM)
    settings = load_settings(
        _config(tmp_path, "tts:\n  backend: hum\n  pitch_hz: 440\n"), model=model
    )
    stages = build_stages(settings)
    assert isinstance(stages.tts, HumTts) and stages.tts.options.pitch_hz == 440
    assert isinstance(stages.asr, ScriptedAsr)
    [chunk] = [c async for c in stages.tts.synthesize("Hello.")]
    assert chunk.final and chunk.samples.size == 1600


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "tts:\n  backend: hum\n  voice: x.onnx\n",
            "tts.voice: not a key of the tts backend 'hum'",
        ),
        ("tts:\n  backend: hum\n  pitch_hz: 5\n", "pitch_hz must be within 50..1000"),
        ("tts:\n  backend: humm\n", "unknown backend 'humm' (known: 'piper', 'espeak', 'fake', "),
    ],
)
def test_a_new_backend_is_validated_like_the_others(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_config(tmp_path, text), model=Settings.with_backends(WITH_HUM))
    assert needle in str(info.value)


def test_the_default_settings_do_not_know_the_new_backend(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown backend 'hum'"):
        load_settings(_config(tmp_path, "tts:\n  backend: hum\n"))


def test_remote_backends_fall_back_to_their_embedded_engines(tmp_path: Path) -> None:
    service = "  service:\n    base_url: http://127.0.0.1:9/v1\n"
    path = tmp_path / "remote.yaml"
    path.write_text(
        f"asr:\n  backend: openai\n{service}dialogue:\n  backend: fake\n"
        f"tts:\n  backend: openai\n{service}"
    )
    stages = build_stages(load_settings(path))
    assert isinstance(stages.asr, FallbackAsr)
    assert isinstance(stages.asr.primary, OpenAiAsr)
    assert isinstance(stages.asr.fallback, WhisperAsr)
    assert isinstance(stages.tts, FallbackTts)
    assert isinstance(stages.tts.primary, OpenAiTts)
    assert isinstance(stages.tts.fallback, LanguageRouterTts)
    no_fallback = f"tts:\n  backend: openai\n  fallback_embedded: false\n{service}"
    settings = load_settings(_config(tmp_path, no_fallback))
    assert isinstance(build_stages(settings).tts, OpenAiTts)
