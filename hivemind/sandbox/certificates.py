"""The sandbox's certificate authority, and the certificates it issues.

The CA (`load_or_create_authority`) is created once per HiveMind home and kept in
`<home>/sandbox/ca.pem` (its key in `ca.key`, mode 0600); it signs the Instance Connect
Endpoints' certificates (`hivemind.sandbox.connect_endpoint`) and the certificates for
domains below.

On AWS an HTTPS listener serves an ACM certificate issued for the operator's domain
(requested and validated in ACM, or issued elsewhere and imported), and browsers trust
it through the system's trust store. The sandbox offers the second way, offline:

* `issue(state, domain)` signs a certificate for `domain` (and more names) with the
  sandbox's CA (`<home>/sandbox/ca.pem`, the same CA as the Instance Connect Endpoints'
  certificates), and `hivemind sandbox certificate DOMAIN` imports it into the sandbox's
  ACM (ImportCertificate: certificate, private key, chain), printing its ARN for
  `--certificate-arn`. An imported certificate is ISSUED at once, as on AWS.
* `write_trust_bundle(state)` writes `<home>/sandbox/trust.pem`: the system's trust
  store with the sandbox's CA added. `control.environment()` names it in SSL_CERT_FILE,
  the variable OpenSSL (so Python's default TLS context, curl, git) takes its trust
  store from, so that HiveMind's QA verifies the load balancer's certificate exactly as
  it does on AWS, with no option to skip verification.

ACM's RequestCertificate (moto's) is left as it is: a requested certificate waits for
validation (PENDING_VALIDATION), and the sandbox's load balancers refuse it as AWS's do
(see `hivemind.sandbox.elbv2`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hivemind.sandbox.control import CA_CERTIFICATE_FILE, CA_KEY_FILE, TRUST_BUNDLE_FILE

log = logging.getLogger("hivemind.sandbox")

# ACM's imported certificates may be valid for up to 13 months as public ones are; a
# year is plenty for a sandbox, and QA warns 14 days before expiry.
LIFETIME = dt.timedelta(days=365)
CA_LIFETIME = dt.timedelta(days=3650)
CA_RENEWAL = dt.timedelta(days=30)  # a CA closer than this to its end is replaced
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


class NoAuthority(Exception):
    """The sandbox's CA is not in the state folder (its daemon has not started there)."""


@dataclass(frozen=True)
class Authority:
    """The CA: its certificate, its key and the certificate's file."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    path: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def load_authority(directory: Path) -> Authority | None:
    """The usable CA kept in `directory` (its key matching, not near its end), or None."""
    certificate_file = directory / CA_CERTIFICATE_FILE
    with contextlib.suppress(OSError, ValueError, TypeError):
        certificate = x509.load_pem_x509_certificate(certificate_file.read_bytes())
        key = serialization.load_pem_private_key(
            (directory / CA_KEY_FILE).read_bytes(), password=None
        )
        if (
            isinstance(key, ec.EllipticCurvePrivateKey)
            and key.public_key() == certificate.public_key()
            and certificate.not_valid_after_utc - CA_RENEWAL > _now()
        ):
            return Authority(certificate, key, certificate_file)
    return None


def load_or_create_authority(directory: Path) -> Authority:
    """The CA kept in `directory`, a new one written there unless a usable one is."""
    found = load_authority(directory)
    if found is not None:
        return found
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "HiveMind sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"HiveMind sandbox CA {uuid.uuid4().hex[:8]}"),
        ]
    )
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    certificate_file = directory / CA_CERTIFICATE_FILE
    # The key first: a certificate file on disk always has its key next to it.
    write_atomic(directory / CA_KEY_FILE, key_pem(key), 0o600)
    write_atomic(certificate_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info("sandbox CA created at %s", certificate_file)
    return Authority(certificate, key, certificate_file)


def sign(
    authority: Authority,
    common_name: str,
    names: Sequence[x509.GeneralName],
    lifetime: dt.timedelta,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new server certificate (and its EC P-256 key) for `names` (subjectAltName),
    signed by `authority`, valid for `lifetime` (never past the CA's own end)."""
    key = ec.generate_private_key(ec.SECP256R1())  # ACM imports EC P-256 keys too
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + lifetime, authority.certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
        .sign(authority.key, hashes.SHA256())
    )
    return certificate, key


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write `path` whole or not at all (a reader never sees half of it), with `mode`."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Issued:
    """A certificate for ACM's ImportCertificate, PEM-encoded."""

    certificate: bytes
    private_key: bytes
    chain: bytes


def issue(state: Path, domain: str, alternative_names: tuple[str, ...] = ()) -> Issued:
    """A certificate for `domain` and `alternative_names` (subjectAltName DNS names; a
    wildcard such as *.example.com is one), signed by the CA in `state`."""
    authority = load_authority(state)
    if authority is None:
        raise NoAuthority(f"no usable sandbox CA in {state}")
    names = list(dict.fromkeys((domain, *alternative_names)))
    certificate, key = sign(authority, domain, [x509.DNSName(name) for name in names], LIFETIME)
    return Issued(
        certificate=certificate.public_bytes(serialization.Encoding.PEM),
        private_key=key_pem(key),
        chain=authority.certificate.public_bytes(serialization.Encoding.PEM),
    )


def system_trust_store(exclude: Path | None = None) -> Path | None:
    """The PEM file of the system's trusted CAs that OpenSSL reads by default (before
    SSL_CERT_FILE changes it), or certifi's when the system has none; never `exclude`
    (a trust bundle of ours that SSL_CERT_FILE may already name)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.openssl_cafile, paths.cafile):
        if not candidate or not Path(candidate).is_file():
            continue
        if exclude is not None and Path(candidate).resolve() == exclude.resolve():
            continue
        return Path(candidate)
    try:
        import certifi
    except ImportError:
        return None
    return Path(certifi.where())


def write_trust_bundle(state: Path) -> Path:
    """`<state>/trust.pem`: the system's trusted CAs and the sandbox's CA (rewritten
    whole, atomically, so a reader never sees half of it)."""
    ca = (state / CA_CERTIFICATE_FILE).read_bytes()
    bundle = state / TRUST_BUNDLE_FILE
    system = system_trust_store(exclude=bundle)
    trusted = system.read_bytes() if system is not None else b""
    write_atomic(bundle, trusted.rstrip(b"\n") + b"\n" + ca if trusted else ca, 0o644)
    return bundle
