from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inference.asr import OpenAiAsr, ScriptedAsr, WhisperAsr
from inference.asr.fake import ScriptedAsrSettings
from inference.asr.openai_http import OpenAiAsrSettings
from inference.asr.whisper import WhisperAsrSettings
from inference.dialogue import FaqDialogue, OpenAiChatDialogue, ScriptedDialogue
from inference.dialogue.openai_chat import OpenAiChatSettings
from inference.service import ServiceSettings
from inference.tts import EspeakTts, FakeTts, KokoroZhTts, LanguageRouterTts, OpenAiTts
from inference.tts.openai_http import OpenAiTtsSettings
from inference.tts.piper_tts import PiperTtsSettings
from signaling.cli import main
from signaling.config import ConfigError, Settings, load_settings

_FAKES = "asr: {backend: fake}\ndialogue: {backend: fake}\ntts: {backend: fake}\n"  # no files
_KEY = "k" * 20


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
        ("1: 2\n", "top-level keys must be text: 1"),
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
    cfg.write_text(_FAKES + f"cache: {{dir: {tmp_path}}}\napi_key: hunter2-hunter2-hunter2\n")
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
    ("tts", "kokoro_zh"): KokoroZhTts,
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


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"port: 8080\n\xff\xfe\n", "is not UTF-8 text (byte 11)"),
        (None, "is a directory, not a file"),
    ],
)
def test_an_unreadable_file_is_named(tmp_path: Path, content: bytes | None, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    if content is None:
        cfg.mkdir()
    else:
        cfg.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert f"configuration file {cfg} {needle}" == str(info.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("port: 1\nhost: x\nport: 2\n", "line 3, column 1: duplicate key 'port' (first on line 1)"),
        ("media:\n  lead_ms: 1\n  lead_ms: 2\n", "line 3, column 3: duplicate key 'lead_ms'"),
        (f"access:\n  keys:\n  - {{name: a, key: {_KEY}, name: b}}\n", "duplicate key 'name'"),
    ],
)
def test_a_repeated_key_is_refused_with_its_line(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_merged_key_may_be_overridden(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("media:\n  <<: {lead_ms: 100, end_silence_ms: 700}\n  lead_ms: 200\n")
    s = load_settings(cfg)
    assert (s.media.lead_ms, s.media.end_silence_ms) == (200, 700)


def test_a_malformed_environment_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_RTC_ICE_SERVERS", "not json")
    with pytest.raises(ConfigError, match="ice_servers"):
        load_settings(None)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"access": {"token_secret": "short"}}, "access.token_secret: Value error, must be at"),
        ({"api_key": "hunter2"}, "api_key: Value error, must be at least 16 characters"),
        (
            {"access": {"keys": [{"name": "a", "key": _KEY}, {"name": "a", "key": _KEY * 2}]}},
            "access.keys: Value error, API key names must be unique; repeated: a",
        ),
        (
            {"api_key": _KEY, "access": {"keys": [{"name": "default", "key": _KEY * 2}]}},
            "api_key is the key named 'default'",
        ),
    ],
)
def test_the_model_refuses_what_the_access_policy_refuses(
    overrides: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, overrides)
    assert needle in str(info.value)


@pytest.mark.parametrize("secret", ["s" * 16, "\u5bc6" * 6, ""])
def test_a_token_secret_the_model_accepts_builds_the_policy(secret: str) -> None:
    from signaling.server.auth import AccessPolicy
    from signaling.server.state import access_options

    settings = load_settings(None, {"access": {"token_secret": secret}})
    AccessPolicy(access_options(settings))  # 6 CJK characters are 18 bytes; "" is random


def _write_case(tmp_path: Path, case: str) -> Path:
    """A configuration file that ``serve`` refuses, for each of ``_REFUSED``."""
    cfg = tmp_path / "c.yaml"
    content = _REFUSED[case][0]
    if content is None:
        cfg.mkdir()
    else:
        cfg.write_bytes(content.replace(b"TMP", str(tmp_path).encode()))
    return cfg


_REFUSED: dict[str, tuple[bytes | None, str]] = {
    "not UTF-8": (b"port: 1\n\xff\n", "is not UTF-8 text"),
    "a directory": (None, "is a directory"),
    "a repeated key": (b"port: 1\nport: 2\n", "duplicate key 'port'"),
    "a short token secret": (b"access:\n  token_secret: short\n", "access.token_secret"),
    "a short api key": (b"api_key: short\n", "api_key: Value error"),
    "no knowledge base": (
        b"asr: {backend: fake}\ntts: {backend: fake}\ncache: {enabled: false}\n"
        b"dialogue: {backend: faq, knowledge_base: TMP/kb.yaml}\n",
        "dialogue (faq): knowledge base file not found: TMP/kb.yaml",
    ),
    "no whisper model": (
        b"asr: {model_dir: TMP/whisper}\ndialogue: {backend: fake}\ntts: {backend: fake}\n",
        "asr (whisper): whisper model folder not found: TMP/whisper",
    ),
    "no such avatar": (
        _FAKES.encode() + b"render: {avatar: bob, avatars_dir: TMP}\n",
        "render.avatar: no prepared avatar 'bob' in TMP",
    ),
}


@pytest.mark.parametrize("command", ["config", "serve"])
@pytest.mark.parametrize("case", list(_REFUSED))
def test_check_and_serve_refuse_a_bad_file_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    command: str,
) -> None:
    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("serve got past its start-up checks")

    monkeypatch.setattr("signaling.server.app.create_app", started)
    monkeypatch.setattr("signaling.server.app.serve", started)
    cfg = _write_case(tmp_path, case)
    flag = "--check" if command == "config" else "--config"
    assert main([command, flag, str(cfg)]) == 2
    out, err = capsys.readouterr()
    needle = _REFUSED[case][1].replace("TMP", str(tmp_path))
    assert not out and err.startswith("avatar-rtc: ") and needle in err
    assert err.count("\n") == 1, err


@pytest.mark.parametrize("case", ["a directory", "no knowledge base"])
def test_the_command_line_prints_no_traceback(tmp_path: Path, case: str) -> None:
    cfg = _write_case(tmp_path, case)
    command = [sys.executable, "-m", "signaling.cli", "config", "--check", str(cfg)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and not done.stdout
    assert done.stderr.startswith("avatar-rtc: ") and done.stderr.count("\n") == 1, done.stderr


def test_records_default_to_a_file_in_the_data_folder_and_mask_a_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AVATAR_RTC_DATA_DIR", raising=False)
    s = Settings()
    assert s.records.enabled and s.records.url is None and s.records.retention_days == 90
    assert s.data_dir == Path("data")
    s = Settings(records={"url": "postgresql://rec:s3cret@db.example:5432/calls"})
    assert s.masked()["records"]["url"] == "postgresql://rec:***@db.example:5432/calls"
    s = Settings(access={"operator_keys": [_KEY]})
    assert _KEY not in str(s.masked())


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("records: {url: 'mysql://x/y'}\n", "records.url: Value error, must be sqlite:///PATH"),
        ("records: {retention_days: -1}\n", "records.retention_days: Input should be"),
        ("access: {operator_keys: [short]}\n", "each operator key must be at least 16"),
    ],
)
def test_a_bad_records_or_operator_setting_is_named(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(cfg)
    assert needle in str(caught.value)
