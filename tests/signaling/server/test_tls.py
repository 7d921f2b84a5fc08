"""HTTPS: self-signed certificates, certificate checks, a real HTTPS listener, the CLI flags."""

from __future__ import annotations

import hashlib
import ssl
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from aiohttp import ClientConnectorError, ClientError, ClientSession, TCPConnector
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signaling.cli import main
from signaling.config import ConfigError, Settings, load_settings
from signaling.preflight import startup_problems
from signaling.server.app import RedactedAccessLogger, connection_limits, create_app
from signaling.server.listener import Listening, start_server
from signaling.server.tls import (
    SELF_SIGNED_DAYS,
    TlsError,
    TlsOptions,
    certificate_names,
    certificate_problems,
    https_urls,
    lan_addresses,
    self_signed,
    server_tls,
    tls_options,
)
from signaling.stages.services import Services

_FAKES = {"asr": {"backend": "fake"}, "dialogue": {"backend": "fake"}, "tts": {"backend": "fake"}}
NAMES = ("localhost", "127.0.0.1", "::1")


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    made = self_signed(tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem", names=NAMES)
    return made.cert, made.key


def _sans(cert: Path) -> set[str]:
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return ips | set(san.get_values_for_type(x509.DNSName))


def test_self_signed_is_made_once_then_reused(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    first = self_signed(cert, key, names=NAMES)
    assert first.created
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert _sans(cert) == set(NAMES)
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert first.fingerprint == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())

    pem = cert.read_bytes()
    again = self_signed(cert, key, names=["127.0.0.1", "localhost"])
    assert not again.created
    assert again.fingerprint == first.fingerprint
    assert cert.read_bytes() == pem  # untouched


def test_self_signed_is_renewed_for_new_addresses_near_its_end_or_when_broken(
    tmp_path: Path,
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    first = self_signed(cert, key, names=NAMES)
    moved = self_signed(cert, key, names=[*NAMES, "192.0.2.7"])  # the LAN address changed
    assert moved.created and moved.fingerprint != first.fingerprint
    assert "192.0.2.7" in _sans(cert)
    late = datetime.now(UTC) + timedelta(days=SELF_SIGNED_DAYS - 3)
    assert self_signed(cert, key, names=NAMES, now=late).created
    key.write_text("damaged")
    assert self_signed(cert, key, names=NAMES).created
    assert not list(certificate_problems(cert, key))


def test_certificate_names_cover_loopback_lan_and_the_bound_host() -> None:
    names = certificate_names("0.0.0.0")
    assert {"localhost", "127.0.0.1"} <= set(names)
    assert set(lan_addresses()) <= set(names)
    assert "avatar.lan" in certificate_names("avatar.lan")
    assert https_urls("0.0.0.0", 8443, lan=["192.0.2.7"]) == [
        "https://192.0.2.7:8443/",
        "https://localhost:8443/",
    ]
    assert https_urls("::1", 8443) == ["https://[::1]:8443/"]


def _other_key(path: Path, *, password: bytes | None = None) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    crypt = (
        serialization.BestAvailableEncryption(password)
        if password is not None
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, crypt)
    )
    return path


def test_each_certificate_problem_names_its_file(pair: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = pair
    assert list(certificate_problems(cert, key)) == []
    missing = tmp_path / "nope.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    other = _other_key(tmp_path / "other.pem")
    locked = _other_key(tmp_path / "locked.pem", password=b"secret-passphrase")
    cases = {
        (missing, key): f"tls.cert: no file {missing}",
        (cert, missing): f"tls.key: no file {missing}",
        (garbage, key): f"tls.cert: {garbage} is not a PEM certificate",
        (cert, garbage): f"tls.key: {garbage} is not a PEM private key",
        (cert, other): f"tls.key: {other} is not the key of the certificate in {cert}",
        (cert, locked): f"tls.key: {locked} is encrypted",
        (tmp_path, key): f"tls.cert: {tmp_path} is a directory",
    }
    for (c, k), needle in cases.items():
        problems = list(certificate_problems(c, k))
        assert len(problems) == 1 and problems[0].startswith(needle), (c, k, problems)
    later = datetime.now(UTC) + timedelta(days=SELF_SIGNED_DAYS + 1)
    (expired,) = certificate_problems(cert, key, now=later)
    assert expired.startswith(f"tls.cert: the certificate in {cert} expired on ")
    with pytest.raises(TlsError, match="is not the key"):
        server_tls(TlsOptions(cert=cert, key=other), bind_host="127.0.0.1")


def test_the_tls_section_is_validated_and_checked_at_start(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = pair
    with pytest.raises(ConfigError, match=r"tls: .*go together"):
        load_settings(None, {"tls": {"cert": str(cert)}})
    with pytest.raises(ConfigError, match="not both"):
        load_settings(None, {"tls": {"cert": str(cert), "key": str(key), "self_signed": True}})
    base = {**_FAKES, "render": {"avatars_dir": str(tmp_path / "avatars")}, "cache": {"dir": None}}
    plain = load_settings(None, base)
    assert tls_options(plain) is None
    other = _other_key(tmp_path / "other.pem")
    bad = load_settings(None, {**base, "tls": {"cert": str(cert), "key": str(other)}})
    assert [p for p in startup_problems(bad) if p.startswith("tls")] == [
        f"tls.key: {other} is not the key of the certificate in {cert}"
    ]
    under_file = tmp_path / "a-file"
    under_file.write_text("")
    made = load_settings(None, {**base, "data_dir": str(under_file), "tls": {"self_signed": True}})
    assert any("tls.self_signed" in p for p in startup_problems(made))


def test_self_signed_settings_make_a_pair_in_the_data_folder_and_print_it(
    tmp_path: Path,
) -> None:
    settings = load_settings(None, {"data_dir": str(tmp_path), "tls": {"self_signed": True}})
    options = tls_options(settings)
    assert options is not None and options.cert == tmp_path / "tls" / "cert.pem"
    first = server_tls(options, bind_host="127.0.0.1")
    assert first.self_signed is not None and first.self_signed.created
    again = server_tls(options, bind_host="127.0.0.1")
    assert again.self_signed is not None and not again.self_signed.created
    assert again.fingerprint == first.fingerprint
    banner = "\n".join(again.banner(bind_host="127.0.0.1", port=8443))
    assert "serving on https://127.0.0.1:8443/" in banner
    assert f"fingerprint {first.fingerprint}" in banner and "(reused)" in banner


@pytest.fixture
async def https_server(
    pair: tuple[Path, Path], settings: Settings, fake_services: Services
) -> AsyncIterator[tuple[str, ssl.SSLContext]]:
    cert, key = pair
    tls = server_tls(TlsOptions(cert=cert, key=key), bind_host="127.0.0.1")
    app = create_app(settings, services=fake_services)
    listening = await _listen(app, settings, "127.0.0.1", tls.context)
    try:
        yield f"https://127.0.0.1:{listening.port}", ssl.create_default_context(cafile=cert)
    finally:
        await listening.close()


async def _listen(app: object, settings: Settings, host: str, ctx: ssl.SSLContext) -> Listening:
    return await start_server(
        app,  # type: ignore[arg-type]
        host=host,
        port=0,
        limits=connection_limits(settings),
        access_log_class=RedactedAccessLogger,
        ssl_context=ctx,
    )


async def test_health_and_session_over_https(
    https_server: tuple[str, ssl.SSLContext],
) -> None:
    url, trust = https_server
    async with ClientSession(connector=TCPConnector(ssl=trust)) as http:
        async with http.get(url + "/health/ready") as r:
            assert r.status == 200
        async with http.post(url + "/session", json={}) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["token"].startswith("v1.")
        async with http.ws_connect(url.replace("https", "wss") + "/ws") as ws:
            assert not ws.closed  # the upgrade works over TLS (the socket then asks for a token)
    async with ClientSession() as untrusting:  # the system's CAs do not know this one
        with pytest.raises(ClientConnectorError):
            await untrusting.get(url + "/health/live")
    async with ClientSession() as plain:
        with pytest.raises(ClientError):  # plain HTTP on a TLS port: no answer
            await plain.get(url.replace("https", "http") + "/health/live")


async def test_a_lan_caller_gets_in_with_the_documented_settings(
    tmp_path: Path, settings: Settings, fake_services: Services
) -> None:
    """host 0.0.0.0 + ``access.anonymous: any``: a caller from a LAN address (not loopback)
    reaches the page and gets a token by address; the default policy refuses it."""
    lan = lan_addresses()
    if not lan:
        pytest.skip("this host has no LAN address")
    made = self_signed(tmp_path / "cert.pem", tmp_path / "key.pem", names=certificate_names(lan[0]))
    tls = server_tls(TlsOptions(cert=made.cert, key=made.key), bind_host=lan[0])
    trust = ssl.create_default_context(cafile=made.cert)
    for anonymous, status in (("any", 200), ("auto", 403)):
        access = settings.access.model_copy(update={"anonymous": anonymous})
        lan_settings = settings.model_copy(update={"host": "0.0.0.0", "access": access})
        app = create_app(lan_settings, services=fake_services)
        listening = await _listen(app, lan_settings, lan[0], tls.context)
        url = f"https://{lan[0]}:{listening.port}"
        try:
            async with ClientSession(connector=TCPConnector(ssl=trust)) as http:
                async with http.get(url + "/") as r:
                    assert r.status == 200
                async with http.post(url + "/session", json={}, headers={"Origin": url}) as r:
                    assert r.status == status, (anonymous, await r.text())
        finally:
            await listening.close()


def _write_config(path: Path, tls: dict[str, str]) -> Path:
    config = {**_FAKES, "render": {"avatars_dir": str(path.parent / "avatars")}, "tls": tls}
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_refuses_bad_files_in_one_line(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = pair
    missing = tmp_path / "missing.pem"
    config = _write_config(tmp_path / "plain.yaml", {})
    code = main(
        ["serve", "--config", str(config), "--tls-cert", str(missing), "--tls-key", str(key)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"tls.cert: no file {missing}" in err and err.count("\n") == 1, err

    other = _other_key(tmp_path / "other.pem")
    mismatched = _write_config(tmp_path / "bad.yaml", {"cert": str(cert), "key": str(other)})
    assert main(["config", "--check", str(mismatched)]) == 2
    err = capsys.readouterr().err
    assert f"tls.key: {other} is not the key of the certificate in {cert}" in err
    assert err.count("\n") == 1, err

    good = _write_config(tmp_path / "good.yaml", {"cert": str(cert), "key": str(key)})
    assert main(["config", "--check", str(good)]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--self-signed", "--tls-cert", str(cert)])
    assert exited.value.code == 2
