"""The endpoint of an OpenAI-compatible service, shared by every adapter that calls one.

:class:`ServiceOptions` is what an adapter takes: where the service is, its model and key, the
deadlines, the retries and the circuit breaker. :class:`ServiceSettings` is the configuration
section that builds it (``service:`` under each OpenAI-style backend).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from inference.http import HttpTimeouts
from inference.resilience import BreakerOptions, RetryOptions

__all__ = ["ServiceOptions", "ServiceSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceOptions:
    """``base_url`` ends before the endpoint's path (e.g. ``http://127.0.0.1:8000/v1``)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key: str | None = field(default=None, repr=False)
    timeouts: HttpTimeouts = field(default_factory=HttpTimeouts)
    retry: RetryOptions = field(default_factory=RetryOptions)
    breaker: BreakerOptions = field(default_factory=BreakerOptions)

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be http(s)://..., got {self.base_url!r}")
        if not self.model:
            raise ValueError("model must not be empty")

    def url(self, path: str) -> str:
        """The URL of the endpoint ``path`` (``"chat/completions"``, ``"audio/speech"``)."""
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def auth_headers(self) -> dict[str, str]:
        """The ``Authorization`` header when there is an API key, else nothing."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


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

    def options(self) -> ServiceOptions:
        """The adapter's view of this section."""
        return ServiceOptions(
            base_url=self.base_url,
            model=self.model,
            api_key=self.api_key.get_secret_value() if self.api_key is not None else None,
            timeouts=HttpTimeouts(
                connect_s=self.connect_timeout_s,
                first_byte_s=self.first_byte_timeout_s,
                read_s=self.read_timeout_s,
            ),
            retry=RetryOptions(attempts=self.attempts),
            breaker=BreakerOptions(
                failure_threshold=self.breaker_failures, reset_after_s=self.breaker_reset_s
            ),
        )
