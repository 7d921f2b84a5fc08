from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inference.asr import OpenAiAsr, ScriptedAsr, WhisperAsr
from inference.asr.fake import ScriptedAsrSettings
from inference.asr.openai_http import OpenAiAsrSettings
from inference.asr.whisper import WhisperAsrSettings
from inference.dialogue import FaqDialogue, OpenAiChatDialogue, ScriptedDialogue
from inference.dialogue.openai_chat import OpenAiChatSettings
from inference.service import ServiceSettings
from inference.tts import EspeakTts, FakeTts, LanguageRouterTts, OpenAiTts
from inference.tts.openai_http import OpenAiTtsSettings
from inference.tts.piper_tts import PiperTtsSettings
from signaling.cli import main
from signaling.config import ConfigError, Settings, load_settings


def test_precedence_file_env_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("port: 9001\nmedia:\n  lead_ms: 200\n  end_silence_ms: 700\n")
    monkeypatch.setenv("AVATAR_RTC_MEDIA__LEAD_MS", "90")
    s = load_settings(cfg, {"port": 9002})
    assert s.port == 9002  # CLI over file
    assert s.media.lead_ms == 90  # env over file
    assert s.media.end_silence_ms == 700  # file over default


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("render:\n  fps: 1000\n", "render.fps"),
        ("nonsense_key: 1\n", "nonsense_key"),
        ("- a\n- b\n", "mapping"),
        ("port: [\n", "not valid YAML"),
        ("ice_servers: [{username: x}]\n", "urls"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_settings(cfg)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(Path("/nonexistent/avatar.yaml"))


def test_config_check_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("api_key: hunter2\n")
    assert main(["config", "--check", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert '"***"' in out


def test_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "config.example.yaml"
    assert load_settings(example).render.renderer == "warp"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("tts:\n  backend: kokoro\n", "tts.backend: unknown backend 'kokoro' (known: 'piper', "),
        ("asr:\n  backend: 7\n", "asr.backend: unknown backend '7'"),
        (
            "tts:\n  service_voice: nova\n",
            "tts.service_voice: not a key of the tts backend 'piper'",
        ),
        (
            "dialogue:\n  backend: fake\n  knowledge_base: kb.yaml\n",
            "dialogue.knowledge_base: not a key of the dialogue backend 'fake'",
        ),
        (
            "asr:\n  backend: openai\n  model_dir: /models/whisper\n",
            "asr.model_dir: not a key of the asr backend 'openai'",
        ),
        (
            "tts:\n  backend: openai\n  service:\n    base_url: ftp://x\n",
            "tts.service.base_url: Value error, must start with http",
        ),
        ("tts:\n  backend: espeak\n  voice: 'a b'\n", "invalid espeak voice name 'a b'"),
        ("tts: fake\n", "tts: must be a mapping"),
    ],
)
def test_a_wrong_backend_or_key_is_named(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert needle in str(info.value)


def test_a_stage_section_from_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(load_settings(None).tts, PiperTtsSettings)  # the default backend
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tts:\n  backend: openai\n  service_voice: alloy\n")
    monkeypatch.setenv("AVATAR_RTC_TTS__SERVICE_VOICE", "nova")  # no backend: the file's
    monkeypatch.setenv("AVATAR_RTC_TTS__EMBEDDED__ZH_VOICE", "yue")
    monkeypatch.setenv("AVATAR_RTC_ASR__BACKEND", "fake")
    s = load_settings(cfg)
    assert isinstance(s.tts, OpenAiTtsSettings) and s.tts.service_voice == "nova"
    assert s.tts.embedded.zh_voice == "yue"
    assert isinstance(s.asr, ScriptedAsrSettings)


def test_remote_backends_share_one_service_section_and_name_their_fallback() -> None:
    s = load_settings(
        None,
        {
            "asr": {"backend": "openai", "language": "zh", "embedded": {"model_dir": "/m"}},
            "dialogue": {"backend": "openai", "service": {"api_key": "k", "attempts": 3}},
            "tts": {"backend": "openai", "fallback_embedded": False},
        },
    )
    assert isinstance(s.asr, OpenAiAsrSettings) and isinstance(s.tts, OpenAiTtsSettings)
    assert isinstance(s.dialogue, OpenAiChatSettings)
    for section in (s.asr.service, s.dialogue.service, s.tts.service):
        assert isinstance(section, ServiceSettings)
    chat = s.dialogue.options().service
    assert chat.api_key == "k" and chat.retry.attempts == 3 and chat.auth_headers()
    embedded = s.asr.fallback_section()
    assert isinstance(embedded, WhisperAsrSettings)
    assert embedded.model_dir == Path("/m") and embedded.language == "zh"  # the service's
    assert s.tts.fallback_section() is None
    assert load_settings(None).tts.fallback_section() is None  # embedded: nothing to fall to


_BUILT = {
    ("asr", "whisper"): WhisperAsr,
    ("asr", "fake"): ScriptedAsr,
    ("asr", "openai"): OpenAiAsr,
    ("dialogue", "faq"): FaqDialogue,
    ("dialogue", "fake"): ScriptedDialogue,
    ("dialogue", "openai"): OpenAiChatDialogue,
    ("tts", "piper"): LanguageRouterTts,
    ("tts", "espeak"): EspeakTts,
    ("tts", "fake"): FakeTts,
    ("tts", "openai"): OpenAiTts,
}


def test_every_configurable_backend_is_listed_here() -> None:
    backends = Settings.backends
    listed = {
        (stage, name)
        for stage in ("asr", "dialogue", "tts")
        for name in getattr(backends, stage).configurable()
    }
    assert listed == set(_BUILT)


@pytest.mark.parametrize(("stage", "name"), list(_BUILT))
def test_every_registered_backend_builds_from_its_settings(stage: str, name: str) -> None:
    if name == "espeak" and shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    s = load_settings(None, {stage: {"backend": name}})
    section = getattr(s, stage)
    assert section.backend == name
    built = getattr(Settings.backends, stage).build(section)
    assert isinstance(built, _BUILT[stage, name])
