"""Services built from settings: LLM dialogue per call, cached TTS and renderer, preloading."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from inference.dialogue import OpenAiChatCall
from inference.render.cached import CachedRenderer
from inference.tts import CachedTts
from signaling.config import load_settings
from signaling.stages.services import load_services


async def test_services_wire_llm_cache_and_preload(tmp_path: Path, avatars_root: Path) -> None:
    settings = load_settings(
        None,
        {
            "asr": {"backend": "fake"},
            "dialogue": {"backend": "openai", "service": {"base_url": "http://127.0.0.1:9/v1"}},
            "tts": {"backend": "fake"},
            "render": {"avatars_dir": str(avatars_root), "output_height": 128},
            "cache": {
                "dir": str(tmp_path / "cache"),
                "preload": False,
                "preload_languages": ["en", "zh"],
            },
        },
    )
    services = await load_services(settings)
    try:
        assert isinstance(services.tts, CachedTts)
        a, b = services.dialogue_for_call(), services.dialogue_for_call()
        assert isinstance(a, OpenAiChatCall) and a is not b
        assert services.start_preload(settings.render.avatar) is None  # preload is off
        services.cache_plan = replace(services.cache_plan, preload=True)
        services.preload_busy = lambda: False  # don't wait for a quiet machine in tests
        task = services.start_preload(settings.render.avatar)
        assert task is not None
        warmed = await task
        assert warmed >= 6  # greeting, apology and fallback lines, in two languages
        stats = services.cache_stats()
        assert stats["puts"] and stats["misses"]
        renderer = await services.renderer_for(settings.render.avatar, session="s1")
        assert isinstance(renderer, CachedRenderer)
        x0, y0, x1, y1 = services.avatar(settings.render.avatar).mouth_box()
        assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0  # where the hello says
        assert services.prefetcher_for_call(renderer, "c1") is None  # speculation is FAQ-only
    finally:
        await services.aclose()
    assert any((tmp_path / "cache").glob("*/*.bin"))  # written to disk: survives a restart
