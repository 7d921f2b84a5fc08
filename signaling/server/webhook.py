"""The handoff webhook: a signed JSON POST to a configured URL when a caller asks for a person.

Each delivery runs in a task of its own with a timeout per attempt and retries with a
growing pause, so a slow or hanging receiver never holds up a call. The body is signed
with HMAC-SHA256 under the shared secret: ``X-Avatar-Signature: sha256=HEX`` (the receiver
recomputes it over the raw body). At most ``max_pending`` deliveries run at once; past that
new ones are dropped and logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

__all__ = ["SIGNATURE_HEADER", "HandoffWebhook", "WebhookOptions", "sign_body"]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Avatar-Signature"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookOptions:
    url: str
    secret: bytes
    timeout_s: float = 5.0
    attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    max_pending: int = 256

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s)://, got {self.url!r}")
        if len(self.secret) < 16:
            raise ValueError("the webhook secret must be at least 16 bytes")
        if self.timeout_s <= 0 or self.attempts < 1 or self.backoff_s <= 0:
            raise ValueError("timeout_s and backoff_s must be > 0, attempts >= 1")


def sign_body(secret: bytes, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class HandoffWebhook:
    """Sends payloads to the webhook in the background; :meth:`close` ends what is left."""

    def __init__(self, options: WebhookOptions) -> None:
        self.options = options
        self._tasks: set[asyncio.Task[bool]] = set()
        self._http: aiohttp.ClientSession | None = None
        self.delivered = 0
        self.failed = 0

    def send(self, payload: Mapping[str, Any]) -> asyncio.Task[bool] | None:
        """Start delivering ``payload`` (a task that ends True once it was accepted)."""
        if len(self._tasks) >= self.options.max_pending:
            log.error("handoff webhook: %d deliveries pending; dropping this one", len(self._tasks))
            self.failed += 1
            return None
        body = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode()
        task = asyncio.ensure_future(self._deliver(body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def _deliver(self, body: bytes) -> bool:
        opts = self.options
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_body(opts.secret, body),
        }
        pause = opts.backoff_s
        for attempt in range(1, opts.attempts + 1):
            problem = await self._attempt(body, headers)
            if problem is None:
                self.delivered += 1
                return True
            log.warning("handoff webhook attempt %d/%d: %s", attempt, opts.attempts, problem)
            if attempt < opts.attempts:
                await asyncio.sleep(pause)
                pause = min(pause * 2, opts.max_backoff_s)
        self.failed += 1
        log.error("handoff webhook: gave up after %d attempts", opts.attempts)
        return False

    async def _attempt(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """None when the receiver accepted the body (2xx), else what went wrong."""
        timeout = aiohttp.ClientTimeout(total=self.options.timeout_s)
        try:
            async with self._session().post(
                self.options.url, data=body, headers=headers, timeout=timeout
            ) as r:
                return None if 200 <= r.status < 300 else f"HTTP {r.status}"
        except TimeoutError:
            return f"no answer within {self.options.timeout_s:g} s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
