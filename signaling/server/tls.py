"""HTTPS for the server: a certificate and key from files, or a self-signed pair for LAN trials.

Browsers give the microphone only to ``https://`` pages (and to ``localhost``), so a phone on
the LAN needs the server on HTTPS. :func:`certificate_problems` names what is wrong with a
pair of PEM files (one line each, naming the file); :func:`self_signed` creates a certificate
for this host's addresses once and reuses it while it is valid and names them all;
:func:`server_tls` turns :class:`TlsOptions` into the ``ssl.SSLContext`` the listener uses.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signaling.config import ConfigError, Settings

__all__ = [
    "SELF_SIGNED_DAYS",
    "SelfSigned",
    "ServerTls",
    "TlsError",
    "TlsOptions",
    "certificate_names",
    "certificate_problems",
    "fingerprint",
    "https_urls",
    "lan_addresses",
    "self_signed",
    "server_tls",
    "spki_sha256",
    "tls_options",
]

SELF_SIGNED_DAYS = 397  # within the 398 days Apple's and Google's browsers accept
_RENEW_BEFORE = timedelta(days=7)  # a self-signed certificate this close to its end is renewed
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class TlsError(ConfigError):
    """A certificate or key that cannot be used; the message names the file."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsOptions:
    """The PEM files the server presents; ``self_signed``: create (or renew) them first."""

    cert: Path
    key: Path
    self_signed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SelfSigned:
    """A self-signed pair on disk: ``created`` is False when an existing one was reused."""

    cert: Path
    key: Path
    fingerprint: str
    names: tuple[str, ...]
    created: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerTls:
    """What the listener needs (``context``) and what the start-up banner says."""

    context: ssl.SSLContext
    fingerprint: str
    self_signed: SelfSigned | None = None

    def banner(self, *, bind_host: str, port: int) -> list[str]:
        """The lines printed at start: where browsers reach the server, the fingerprint."""
        urls = https_urls(bind_host, port, lan=lan_addresses())
        also = f" (also {', '.join(urls[1:])})" if len(urls) > 1 else ""
        lines = [f"avatar-rtc: serving on {urls[0]}{also}"]
        made = self.self_signed
        if made is not None:
            state = "created" if made.created else "reused"
            lines.append(
                f"avatar-rtc: self-signed certificate {made.cert} ({state}): browsers warn "
                "about it; accept it where the fingerprint below matches"
            )
        lines.append(f"avatar-rtc: certificate SHA-256 fingerprint {self.fingerprint}")
        return lines


def tls_options(settings: Settings) -> TlsOptions | None:
    """The HTTPS files the settings describe (None: plain HTTP). A self-signed pair lives in
    ``tls/`` of ``data_dir``."""
    t = settings.tls
    if t.self_signed:
        folder = Path(settings.data_dir) / "tls"
        return TlsOptions(cert=folder / "cert.pem", key=folder / "key.pem", self_signed=True)
    if t.cert is None or t.key is None:
        return None
    return TlsOptions(cert=Path(t.cert), key=Path(t.key))


def server_tls(options: TlsOptions, *, bind_host: str, now: datetime | None = None) -> ServerTls:
    """The server's TLS context (the self-signed pair created or renewed first, if asked);
    :class:`TlsError` naming the file when it cannot be used."""
    made: SelfSigned | None = None
    if options.self_signed:
        names = certificate_names(bind_host)
        try:
            made = self_signed(options.cert, options.key, names=names, now=now)
        except OSError as exc:
            where = exc.filename or options.cert.parent
            raise TlsError(f"tls.self_signed: cannot write {where}: {exc.strerror}") from exc
    problems = list(certificate_problems(options.cert, options.key, now=now))
    if problems:
        raise TlsError(problems[0])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(options.cert, options.key)
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"tls: cannot use {options.cert} with {options.key}: {exc}") from exc
    cert = _read_cert(options.cert)
    return ServerTls(context=context, fingerprint=fingerprint(cert), self_signed=made)


def certificate_problems(cert: Path, key: Path, *, now: datetime | None = None) -> Iterator[str]:
    """What stops the server from presenting ``cert`` with ``key``, one line each naming the
    file: missing or unreadable, not PEM, an encrypted key, the two not a pair, expired."""
    try:
        certificate = _read_cert(cert)
    except TlsError as exc:
        yield str(exc)
        certificate = None
    try:
        private = _read_key(key)
    except TlsError as exc:
        yield str(exc)
        return
    if certificate is None:
        return
    if _spki(certificate) != _spki(private):
        yield f"tls.key: {key} is not the key of the certificate in {cert}"
    ends = certificate.not_valid_after_utc
    if ends <= (now or datetime.now(UTC)):
        yield f"tls.cert: the certificate in {cert} expired on {ends:%Y-%m-%d %H:%M} UTC"


def fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 fingerprint as browsers show it: ``AB:CD:...``."""
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def spki_sha256(cert: x509.Certificate) -> str:
    """Base64 SHA-256 of the public key (chromium's ``--ignore-certificate-errors-spki-list``)."""
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(_spki(cert)).digest()).decode("ascii")


def self_signed(
    cert: Path, key: Path, *, names: Iterable[str], now: datetime | None = None
) -> SelfSigned:
    """The self-signed pair at ``cert`` and ``key`` for ``names`` (DNS names and IP
    addresses): reused while it is valid for another week and names them all, else created
    (an ECDSA P-256 key, written with mode 0600)."""
    now = now or datetime.now(UTC)
    wanted = tuple(dict.fromkeys(names))
    existing = _reusable(cert, key, wanted, now)
    if existing is not None:
        return SelfSigned(
            cert=cert, key=key, fingerprint=fingerprint(existing), names=wanted, created=False
        )
    private = ec.generate_private_key(ec.SECP256R1())
    certificate = _build_certificate(private, wanted, now)
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    _write(key, _key_pem(private), mode=0o600)
    _write(cert, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return SelfSigned(
        cert=cert, key=key, fingerprint=fingerprint(certificate), names=wanted, created=True
    )


def certificate_names(bind_host: str) -> list[str]:
    """What a self-signed certificate names: ``localhost``, ``127.0.0.1``, ``::1``, this
    host's name and LAN addresses, and the address or name the server binds to."""
    names = ["localhost", "127.0.0.1", "::1"]
    hostname = socket.gethostname().strip().lower()
    if hostname and _is_dns_name(hostname):
        names.append(hostname)
    names += lan_addresses()
    if bind_host not in _WILDCARD_HOSTS:
        names.append(bind_host.strip("[]").lower())
    return list(dict.fromkeys(names))


def lan_addresses() -> list[str]:
    """This host's IPv4 addresses other than loopback and link-local, in interface order."""
    import ifaddr  # aioice's dependency, so aiortc's

    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue  # IPv6 entries are tuples
            addr = ipaddress.ip_address(ip.ip)
            if not (addr.is_loopback or addr.is_link_local or addr.is_unspecified):
                found.append(str(addr))
    return list(dict.fromkeys(found))


def https_urls(bind_host: str, port: int, *, lan: Iterable[str] = ()) -> list[str]:
    """Where browsers reach the server: each LAN address (then ``localhost``) when it binds
    every interface, else the address or name it binds to."""
    if bind_host in _WILDCARD_HOSTS:
        hosts = [*lan, "localhost"]
    else:
        hosts = [bind_host.strip("[]")]
    return [f"https://{_url_host(h)}:{port}/" for h in hosts]


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_dns_name(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return all(0 < len(p) <= 63 and p.replace("-", "").isalnum() for p in labels)


def _read_bytes(path: Path, label: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise TlsError(f"{label}: no file {path}") from exc
    except IsADirectoryError as exc:
        raise TlsError(f"{label}: {path} is a directory, not a file") from exc
    except OSError as exc:
        raise TlsError(f"{label}: cannot read {path}: {exc.strerror or exc}") from exc


def _read_cert(path: Path) -> x509.Certificate:
    data = _read_bytes(path, "tls.cert")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise TlsError(f"tls.cert: {path} is not a PEM certificate") from exc


def _read_key(path: Path) -> PrivateKeyTypes:
    data = _read_bytes(path, "tls.key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # encrypted
        raise TlsError(f"tls.key: {path} is encrypted; give an unencrypted key") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise TlsError(f"tls.key: {path} is not a PEM private key") from exc


def _spki(owner: x509.Certificate | PrivateKeyTypes) -> bytes:
    """The DER SubjectPublicKeyInfo of a certificate's or a private key's public key."""
    return owner.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _san_names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return ips | {n.lower() for n in san.get_values_for_type(x509.DNSName)}


def _reusable(
    cert: Path, key: Path, names: tuple[str, ...], now: datetime
) -> x509.Certificate | None:
    """The certificate at ``cert`` if it and ``key`` form a pair valid past next week that
    names every one of ``names``; None if anything is missing or different."""
    if not (cert.is_file() and key.is_file()):
        return None
    if any(True for _ in certificate_problems(cert, key, now=now + _RENEW_BEFORE)):
        return None
    certificate = _read_cert(cert)
    wanted = {str(ipaddress.ip_address(n)) if _is_ip(n) else n.lower() for n in names}
    return certificate if wanted <= _san_names(certificate) else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _build_certificate(
    key: ec.EllipticCurvePrivateKey, names: tuple[str, ...], now: datetime
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "avatar-rtc (self-signed)")])
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )


def _write(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to a new file beside ``path`` with ``mode``, then rename it over
    ``path`` (readers never see half a file; a key is never readable by others)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # the umask may have narrowed it, never widened
            f.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
