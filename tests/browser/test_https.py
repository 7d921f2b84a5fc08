"""The call page over HTTPS with ``--self-signed``, from the host's LAN address where it has
one: the page is a secure context (the microphone is allowed) and the call connects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from signaling.server.tls import (
    SelfSigned,
    certificate_names,
    lan_addresses,
    self_signed,
    spki_sha256,
)
from tests.browser.harness import ROOT, launch_chromium
from tests.harness.spawn import SpawnedServer, spawn_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def https_server(
    tmp_path_factory: pytest.TempPathFactory, artifacts: Path
) -> Iterator[tuple[SpawnedServer, SelfSigned]]:
    """``serve --self-signed --host 0.0.0.0`` with anonymous callers from anywhere (a LAN
    trial); its pair is made here first, so the server must reuse it."""
    data = tmp_path_factory.mktemp("data")
    made = self_signed(
        data / "tls" / "cert.pem", data / "tls" / "key.pem", names=certificate_names("0.0.0.0")
    )
    env = {"AVATAR_RTC_DATA_DIR": str(data), "AVATAR_RTC_ACCESS__ANONYMOUS": "any"}
    with spawn_server(
        args=("--self-signed", "--host", "0.0.0.0"),
        env=env,
        log=artifacts / "server-https.log",
        cwd=ROOT,
        tls_ca=made.cert,
    ) as server:
        yield server, made


async def test_call_page_over_https_connects(
    https_server: tuple[SpawnedServer, SelfSigned], silence: Path, artifacts: Path
) -> None:
    server, made = https_server
    log = server.log.read_text()
    assert f"fingerprint {made.fingerprint}" in log and "(reused)" in log, log
    assert f"https://localhost:{server.port}/" in log, log

    cert = x509.load_pem_x509_certificate(made.cert.read_bytes())
    lan = lan_addresses()
    host = lan[0] if lan else "127.0.0.1"
    trust = f"--ignore-certificate-errors-spki-list={spki_sha256(cert)}"
    async with launch_chromium(str(silence), extra_args=(trust,)) as browser:
        page: Any = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"https://{host}:{server.port}/")
        assert await page.evaluate("location.protocol") == "https:"
        assert await page.evaluate("window.isSecureContext")
        await page.wait_for_function("document.querySelector('#avatar').options.length > 0")
        await page.click("#call")
        await page.wait_for_function(
            "document.querySelector('#avatar-video').dataset.firstFrame === 'true'",
            timeout=20_000,
        )
        assert await page.locator("#connection").inner_text() == "Connected"
        assert await page.locator("#mic-indicator").is_visible()
        await page.screenshot(path=str(artifacts / "call-https.png"))
        await page.click("#hangup")
        assert errors == []
