"""Server configuration: one typed model from a YAML file, environment and CLI flags.

Precedence (highest first): CLI flags, ``AVATAR_RTC_*`` environment variables, the YAML file,
the defaults below. The model stops at the CLI boundary: components receive their own
options dataclasses built from it. The ``asr``, ``dialogue`` and ``tts`` sections come from
the stage registries: each is the section of the backend its ``backend`` key names.
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeAlias
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from inference.asr import ASR_BACKENDS, Asr
from inference.dialogue import DIALOGUE_BACKENDS, Dialogue
from inference.registry import BackendSettings, Registry
from inference.tts import TTS_BACKENDS, Tts
from signaling.server.auth import normalize_host_name, normalize_origin
from signaling.server.nodes import NodeMap

__all__ = ["RENDER_CLUSTER_ENV", "ConfigError", "Settings", "StageBackends", "load_settings"]

RENDER_CLUSTER_ENV = "AVATAR_RTC_RENDER_CLUSTER"  # render.cluster, by its agreed short name


class ConfigError(ValueError):
    """The configuration is invalid; the message names the bad key."""


@dataclass(frozen=True, slots=True)
class StageBackends:
    """The registries a :class:`Settings` model takes its stage sections from."""

    asr: Registry[Asr] = field(default_factory=lambda: ASR_BACKENDS)
    dialogue: Registry[Dialogue] = field(default_factory=lambda: DIALOGUE_BACKENDS)
    tts: Registry[Tts] = field(default_factory=lambda: TTS_BACKENDS)


_STAGES = ("asr", "dialogue", "tts")  # the fields of StageBackends, and the stage sections


def _stage_field(registry: Registry[Any]) -> Any:
    """A stage section that defaults to the registry's default backend."""
    return Field(default_factory=registry.default_section)


if TYPE_CHECKING:
    AsrSection: TypeAlias = BackendSettings
    DialogueSection: TypeAlias = BackendSettings
    TtsSection: TypeAlias = BackendSettings
else:  # a union of the registered sections, told apart by ``backend``
    AsrSection = ASR_BACKENDS.settings_type()
    DialogueSection = DIALOGUE_BACKENDS.settings_type()
    TtsSection = TTS_BACKENDS.settings_type()


class CacheSettings(BaseModel):
    """Speech and rendered-clip cache (L1 memory, L2 disk) and predictive preloading."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    dir: Path | None = Path(".cache/avatar-rtc")  # None: memory only (nothing survives restarts)
    l1_bytes: int = Field(256 * 1024 * 1024, ge=0)
    l2_bytes: int = Field(2 * 1024 * 1024 * 1024, ge=0)
    clips: bool = True  # cache rendered clips as well as speech
    preload: bool = True  # warm greeting, fallback/apology and FAQ answers per avatar
    preload_faq: int = Field(1000, ge=0, le=1000)  # answers: first sentences, then the rest
    preload_languages: tuple[Literal["en", "zh"], ...] = ("en", "zh")
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
    # The GPU render cluster (Ray Serve, docs/cluster.md) this media node renders MuseTalk
    # on: "HEAD:6379", the head's address, with this node a member of the cluster (ray start
    # --address=HEAD:6379 --num-cpus=0); a Ray Client address "ray://HEAD:10001" is refused
    # at start (Serve cannot stream over Ray Client). Also the environment variable
    # AVATAR_RTC_RENDER_CLUSTER. None: render in this process.
    cluster: str | None = None

    @field_validator("cluster")
    @classmethod
    def _check_cluster(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        rest = value.removeprefix("ray://")
        host, sep, port = rest.rpartition(":")
        if not sep or not host or "/" in rest or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"{value!r} is not a cluster address: give ray://HOST:PORT (Ray Client, "
                "e.g. ray://head:10001) or HOST:PORT of the cluster's head"
            )
        return value

    @model_validator(mode="after")
    def _cluster_renders_musetalk(self) -> Self:
        if self.cluster is not None and self.renderer != "musetalk":
            raise ValueError("render.cluster renders MuseTalk: set render.renderer: musetalk")
        return self


class MediaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lead_ms: int = Field(120, ge=0, le=2000)  # delay between scheduling and playing reply media
    # Fixed A/V shift of the content, + shows video later. 0: a WebRTC receiver lines up the
    # two tracks' playout from their sender reports itself; the bot measures lips +10 ms
    # after the voice at 0 and +51 ms at 40 (docs/benchmarks.md).
    video_offset_ms: int = Field(0, ge=-500, le=500)
    vad_aggressiveness: int = Field(2, ge=0, le=3)
    end_silence_ms: int = Field(500, ge=100, le=3000)
    # For early ASR, a frame this far (dB) under the loudest of the utterance is silence even
    # while webrtcvad's hangover still calls it voiced; 0: webrtcvad alone (docs/asr.md: 30
    # ends turns sooner on a busy CPU but cuts more hesitations).
    vad_quiet_db: float = Field(0.0, ge=0.0, le=90.0)
    min_utterance_s: float = Field(0.5, ge=0.0, le=5.0)
    max_segment_s: float = Field(8.0, ge=1.0, le=60.0)
    # Transcribe during the end-of-speech silence, after this much of it (0 turns it off).
    early_asr_pause_ms: int = Field(160, ge=0, le=2000)
    # End the caller's turn after this much silence when the early transcript reads as a
    # finished sentence, instead of waiting end_silence_ms (0 turns it off).
    early_end_ms: int = Field(300, ge=0, le=3000)
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
    max_calls: int | None = Field(None, ge=1, le=10000)  # concurrent calls; None: no own cap

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
    """Who may call: API keys, signed session tokens, origins, rate limits, connection and
    call caps (the policy: README, Access and security; docs/protocol.md)."""

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
    turns_per_s: float = Field(0.5, gt=0, le=1000)  # per call: new replies from typed text
    turn_burst: int = Field(3, ge=1, le=1000)
    resumes_per_s: float = Field(0.2, gt=0, le=1000)  # per call: new peer connections (resume)
    resume_burst: int = Field(3, ge=1, le=1000)
    # Host names the server answers to besides IP addresses and localhost ("*": any name).
    public_hosts: list[str] = Field(default_factory=list)
    max_connections: int = Field(512, ge=1, le=100000)  # open TCP connections, all clients
    max_connections_per_ip: int = Field(32, ge=1, le=100000)
    idle_timeout_s: float = Field(20.0, gt=0, le=3600)  # no complete request head: close
    body_timeout_s: float = Field(10.0, gt=0, le=600)  # a request body must arrive in this
    max_calls_per_ip: int = Field(4, ge=1, le=10000)  # concurrent calls of one client IP
    connect_timeout_s: float = Field(4.0, ge=0.5, le=60)  # an answered offer's media must connect
    max_remote_candidates: int = Field(16, ge=1, le=256)  # caller ICE addresses tried per call
    operator_keys: list[SecretStr] = Field(default_factory=list)  # GET /calls, operator console

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        return [normalize_origin(o) for o in value]

    @field_validator("public_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        return [normalize_host_name(h) for h in value]

    @field_validator("keys")
    @classmethod
    def _check_key_names(cls, value: list[ApiKeySettings]) -> list[ApiKeySettings]:
        names = [k.name for k in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"API key names must be unique; repeated: {', '.join(twice)}")
        return value

    @field_validator("operator_keys")
    @classmethod
    def _check_operator_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(len(k.get_secret_value()) < 16 for k in value):
            raise ValueError("each operator key must be at least 16 characters")
        return value

    @field_validator("token_secret")
    @classmethod
    def _check_token_secret(cls, value: SecretStr | None) -> SecretStr | None:
        size = 0 if value is None else len(value.get_secret_value().encode())
        if 0 < size < 16:  # empty: random per process, as None
            raise ValueError("must be at least 16 bytes (16 ASCII characters)")
        return value


class RecordsSettings(BaseModel):
    """Call records (metadata, transcript, timings, outcome) in SQLite or PostgreSQL."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    # sqlite:///relative.db, sqlite:////absolute.db, a file path, or postgresql://user@host/db;
    # None: the SQLite file calls.sqlite3 in data_dir
    url: str | None = None
    retention_days: int = Field(90, ge=0, le=36500)  # older calls are deleted; 0: keep all
    # record each call's audio and video to data_dir/recordings/ID.mkv (the caller is told)
    media: bool = False

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and "://" in value:
            scheme = value.split("://", 1)[0].lower()
            if scheme not in ("sqlite", "postgresql", "postgres"):
                raise ValueError("must be sqlite:///PATH, postgresql://... or a file path")
        return value


class TlsSettings(BaseModel):
    """HTTPS: a certificate and its key (PEM files), or a self-signed pair for LAN trials."""

    model_config = ConfigDict(extra="forbid")
    cert: Path | None = None  # the certificate (a full chain may follow it)
    key: Path | None = None  # its private key, unencrypted
    self_signed: bool = False  # create one in data_dir/tls, reused while valid

    @model_validator(mode="after")
    def _check_files(self) -> Self:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls.cert and tls.key go together: give both files")
        if self.self_signed and self.cert is not None:
            raise ValueError("either tls.self_signed or tls.cert and tls.key, not both")
        return self


class WebhookSettings(BaseModel):
    """A URL told of every handoff (JSON: the call id and its transcript so far), signed with
    HMAC-SHA256 of the body under ``secret`` (docs/protocol.md, Handoff webhook)."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = None  # http(s)://...; None: no webhook
    secret: SecretStr | None = None
    timeout_s: float = Field(5.0, gt=0, le=120)  # per attempt
    attempts: int = Field(4, ge=1, le=20)
    backoff_s: float = Field(1.0, gt=0, le=600)  # the pause after a failure, doubled each time

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _check_secret(self) -> Self:
        size = 0 if self.secret is None else len(self.secret.get_secret_value().encode())
        if self.url is not None and size < 16:
            raise ValueError("a webhook url needs a secret of at least 16 bytes")
        return self


class HandoffSettings(BaseModel):
    """Putting a caller through to a person: when it happens, how the wait goes."""

    model_config = ConfigDict(extra="forbid")
    # auto: on when someone can take the call (access.operator_keys or a webhook url)
    enabled: Literal["auto", "on", "off"] = "auto"
    company_every_s: float = Field(20.0, ge=2.0, le=3600)  # a short line while the caller waits
    timeout_s: float = Field(180.0, ge=5.0, le=86400)  # nobody came: apologise, offer a callback
    expected_wait_s: float = Field(120.0, ge=0, le=86400)  # the wait told the caller
    asks: int = Field(2, ge=1, le=10)  # the request for a person that hands off in any case
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)


class ClusterSettings(BaseModel):
    """Several media nodes behind one address (docs/deploy.md, Several media nodes): this
    node's id starts its session ids; a session's requests that reach another node are
    forwarded to the owner, found in ``nodes`` or through ``node_url``."""

    model_config = ConfigDict(extra="forbid")
    node_id: str | None = None  # 1-32 of a-z 0-9 -; None: a lone node
    nodes: dict[str, str] = Field(default_factory=dict)  # node id -> http://host:port
    node_url: str | None = None  # for ids not in nodes, e.g. "http://{node}.avatar-media:8080"
    forward_timeout_s: float = Field(10.0, gt=0, le=120)  # a forwarded HTTP request, in all
    # Redis the nodes share (redis://, rediss:// or unix://): single-use access tokens hold
    # across nodes; None: each node remembers its own spent tokens
    shared_state: str | None = None

    @field_validator("shared_state")
    @classmethod
    def _check_shared_state(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("shared_state must be a redis://, rediss:// or unix:// URL")
        return value

    @model_validator(mode="after")
    def _check_nodes(self) -> Self:
        if self.node_id is None and (self.nodes or self.node_url):
            raise ValueError("node_id: give this node's id when nodes or node_url are set")
        if self.node_id is not None:
            NodeMap(self_id=self.node_id, nodes=self.nodes, url_template=self.node_url)
        return self


class Settings(BaseSettings):
    """Everything the server reads at start."""

    model_config = SettingsConfigDict(
        env_prefix="AVATAR_RTC_", env_nested_delimiter="__", extra="forbid"
    )
    backends: ClassVar[StageBackends] = StageBackends()

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
    data_dir: Path = Path("data")  # the server's own files: call records, tls/
    asr: AsrSection = _stage_field(ASR_BACKENDS)
    dialogue: DialogueSection = _stage_field(DIALOGUE_BACKENDS)
    tts: TtsSection = _stage_field(TTS_BACKENDS)
    render: RenderSettings = Field(default_factory=RenderSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    records: RecordsSettings = Field(default_factory=RecordsSettings)
    handoff: HandoffSettings = Field(default_factory=HandoffSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)

    @field_validator("ice_servers")
    @classmethod
    def _check_ice(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for server in value:
            if "urls" not in server:
                raise ValueError("each ICE server needs 'urls'")
        return value

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @model_validator(mode="after")
    def _check_cluster_secret(self) -> Self:
        if self.cluster.node_id is not None and self.access.token_secret is None:
            raise ValueError(
                "cluster.node_id: the nodes of a cluster share access.token_secret "
                "(set the same secret of at least 16 bytes on every node)"
            )
        return self

    @model_validator(mode="after")
    def _check_default_key_name(self) -> Self:
        if self.api_key is not None and any(k.name == "default" for k in self.access.keys):
            raise ValueError("api_key is the key named 'default': access.keys may not use it")
        return self

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

    @classmethod
    def with_backends(cls, backends: StageBackends) -> type[Settings]:
        """A Settings model whose stage sections come from ``backends`` (a plug-in's)."""
        stages = {name: getattr(backends, name) for name in _STAGES}
        fields: dict[str, Any] = {
            name: (registry.settings_type(), _stage_field(registry))
            for name, registry in stages.items()
        }
        model = create_model(cls.__name__, __base__=cls, **fields)
        model.backends = backends
        return model

    def masked(self) -> dict[str, Any]:
        """The configuration as printed at start, secrets masked."""
        data = self.model_dump(mode="json")
        if self.api_key is not None:
            data["api_key"] = "***"
        if self.records.url is not None:
            data["records"]["url"] = _mask_password(self.records.url)
        return data


def _mask_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***``."""
    head, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{head}://{userinfo.split(':', 1)[0]}:***@{host}{slash}{path}"


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(item: ErrorDetails) -> str:
    """One error as ``key: problem``; a stage section's errors name its backend."""
    loc = [str(p) for p in item["loc"]]
    if loc and loc[0] in _STAGES:
        stage = loc[0]
        if item["type"] == "union_tag_invalid":
            ctx = item.get("ctx") or {}
            known = ctx.get("expected_tags")
            return f"{stage}.backend: unknown backend {ctx.get('tag')!r} (known: {known})"
        if item["type"] == "union_tag_not_found":
            return f"{stage}: must be a mapping of keys, with its backend's name in 'backend'"
        if len(loc) > 1:
            backend, key = loc[1], ".".join([stage, *loc[2:]])
            if item["type"] == "extra_forbidden":
                return f"{key}: not a key of the {stage} backend {backend!r}"
            return f"{key}: {item['msg']} (backend {backend!r})"
    return f"{'.'.join(loc) or '(root)'}: {item['msg']}"


def _format_error(err: ValidationError) -> str:
    return "invalid configuration: " + "; ".join(_describe(item) for item in err.errors())


class _DuplicateKey(yaml.MarkedYAMLError):
    """A mapping of the file names one key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key repeated in one mapping (``<<`` merges may be
    overridden, as YAML intends)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # the base class reports it
            if key in first:
                line = first[key].line + 1
                problem = f"duplicate key {key!r} (first on line {line})"
                raise _DuplicateKey(problem=problem, problem_mark=key_node.start_mark)
            first[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: where, then what."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = "; ".join(p for p in (exc.context, exc.problem) if p)
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}"
    return " ".join(str(exc).split())


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"configuration file {path} is a directory, not a file") from exc
    except UnicodeDecodeError as exc:
        where = f"byte {exc.start}"
        raise ConfigError(f"configuration file {path} is not UTF-8 text ({where})") from exc
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot read configuration file {path}: {reason}") from exc


def _read_yaml(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        problem = _yaml_problem(exc)
        raise ConfigError(f"configuration file {path} is not valid YAML: {problem}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping at the top")
    odd = [key for key in raw if not isinstance(key, str)]
    if odd:
        raise ConfigError(f"configuration file {path}: top-level keys must be text: {odd[0]!r}")
    return raw


def load_settings(
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    model: type[Settings] = Settings,
) -> Settings:
    """Build Settings from an optional YAML file, the environment and CLI overrides.

    The three layers are merged before one validation, so a stage section set in part by
    the environment keeps the backend the file names.
    """
    file_data = _read_yaml(path) if path is not None else {}
    try:
        env: dict[str, Any] = EnvSettingsSource(model)()
    except SettingsError as exc:
        raise ConfigError(f"invalid configuration: {' '.join(str(exc).split())}") from exc
    render_cluster = os.environ.get(RENDER_CLUSTER_ENV)
    if render_cluster is not None:  # the render cluster's address under its short name
        env = _deep_merge(env, {"render": {"cluster": render_cluster}})
    merged = _deep_merge(_deep_merge(file_data, env), overrides or {})
    try:
        return model(**merged)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from exc
