"""MuseTalk v1.5 on the GPU: models, weights, audio features, engine, renderer, service."""

from inference.render.musetalk.audio import (
    AudioEncoder,
    AudioFeatureStream,
    AudioWindowOptions,
    frame_count,
    windows_for_audio,
)
from inference.render.musetalk.config import MuseTalkArch, official_arch, tiny_arch
from inference.render.musetalk.engine import EngineOptions, FrameJob, MuseTalkEngine
from inference.render.musetalk.model import MuseTalkModels, build_models
from inference.render.musetalk.renderer import MuseTalkRenderer, RendererOptions
from inference.render.musetalk.service import MuseTalkService, ServiceOptions
from inference.render.musetalk.weights import (
    EXPECTED_FILES,
    WeightsError,
    load_musetalk,
    save_official_layout,
)

__all__ = [
    "EXPECTED_FILES",
    "AudioEncoder",
    "AudioFeatureStream",
    "AudioWindowOptions",
    "EngineOptions",
    "FrameJob",
    "MuseTalkArch",
    "MuseTalkEngine",
    "MuseTalkModels",
    "MuseTalkRenderer",
    "MuseTalkService",
    "RendererOptions",
    "ServiceOptions",
    "WeightsError",
    "build_models",
    "frame_count",
    "load_musetalk",
    "official_arch",
    "save_official_layout",
    "tiny_arch",
    "windows_for_audio",
]
