"""Routing TTS by language, and the TTS factory."""

from __future__ import annotations

import shutil

import pytest

from inference.tts import (
    TTS_BACKENDS,
    EspeakTts,
    EspeakTtsOptions,
    FakeTts,
    FakeTtsOptions,
    KokoroZhTts,
    KokoroZhTtsOptions,
    LanguageRouterTts,
    LanguageRouterTtsOptions,
    OpenAiTtsOptions,
    PiperTts,
    PiperTtsOptions,
    make_tts,
)
from inference.tts.piper_tts import PiperTtsSettings


async def test_routes_by_language_with_fallback() -> None:
    en, zh = FakeTts(FakeTtsOptions(sample_rate=22050)), FakeTts(FakeTtsOptions(sample_rate=16000))
    router = LanguageRouterTts({"en": en, "zh": zh})
    assert [c.sample_rate async for c in router.synthesize("Hi.", "en")] == [22050]
    assert [c.sample_rate async for c in router.synthesize("你好。", "zh")] == [16000]
    assert [c.sample_rate async for c in router.synthesize("Bonjour.", "fr")] == [22050]
    assert en.said == [("Hi.", "en"), ("Bonjour.", "fr")] and zh.said == [("你好。", "zh")]
    assert router.languages == ("en", "zh")


async def test_without_fallback_unknown_language_is_an_error() -> None:
    router = LanguageRouterTts({"en": FakeTts()}, fallback_language=None)
    with pytest.raises(ValueError, match="no TTS engine for language 'fr'"):
        router.engine_for("fr")
    with pytest.raises(ValueError, match="fallback_language"):
        LanguageRouterTts({"en": FakeTts()}, fallback_language="zh")


async def test_default_router_speaks_english_with_piper_and_chinese_with_kokoro() -> None:
    router = make_tts(TTS_BACKENDS.default_section().options())
    assert isinstance(router, LanguageRouterTts)
    assert isinstance(router.engine_for("en"), PiperTts)
    assert isinstance(router.engine_for("zh"), KokoroZhTts)
    en = [c async for c in router.synthesize("Thanks for calling.", "en")]
    zh = [c async for c in router.synthesize("谢谢您的来电。", "zh")]
    assert en[-1].final and zh[-1].final
    assert en[0].samples.size > 0 and zh[0].samples.size > 0


def test_espeak_stays_selectable_for_mandarin() -> None:
    section = PiperTtsSettings(zh_engine="espeak", zh_voice="cmn-latn-pinyin")
    routes = section.options().routes
    assert routes["zh"] == EspeakTtsOptions(voice="cmn-latn-pinyin")
    assert isinstance(routes["en"], PiperTtsOptions)
    kokoro = PiperTtsSettings(zh_kokoro_voice="jf_alpha", zh_kokoro_speed=0.9).options()
    assert kokoro.routes["zh"] == KokoroZhTtsOptions(voice="jf_alpha", speed=0.9)
    if shutil.which("espeak-ng") is not None:
        router = make_tts(section.options())
        assert isinstance(router, LanguageRouterTts)
        assert isinstance(router.engine_for("zh"), EspeakTts)


def test_same_options_share_one_engine() -> None:
    fake = FakeTtsOptions()
    router = make_tts(LanguageRouterTtsOptions(routes={"en": fake, "zh": fake}))
    assert isinstance(router, LanguageRouterTts)
    assert router.engine_for("en") is router.engine_for("zh")


def test_router_options_validation_and_registry() -> None:
    assert {name: b.options for name, b in TTS_BACKENDS.items()} == {
        "piper": PiperTtsOptions,
        "espeak": EspeakTtsOptions,
        "fake": FakeTtsOptions,
        "router": LanguageRouterTtsOptions,
        "openai": OpenAiTtsOptions,
        "kokoro_zh": KokoroZhTtsOptions,
    }
    assert list(TTS_BACKENDS.configurable()) == ["piper", "espeak", "fake", "openai", "kokoro_zh"]
    with pytest.raises(TypeError, match="route 'en'"):
        LanguageRouterTtsOptions(routes={"en": "piper"})
    with pytest.raises(ValueError, match="not routed"):
        LanguageRouterTtsOptions(routes={"zh": FakeTtsOptions()})
    with pytest.raises(TypeError, match="no TTS backend"):
        make_tts(42)  # type: ignore[arg-type]
