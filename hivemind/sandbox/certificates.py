"""Certificates for HTTPS in the sandbox, from the sandbox's own CA.

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

import datetime as dt
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hivemind.sandbox.control import CA_CERTIFICATE_FILE, CA_KEY_FILE, TRUST_BUNDLE_FILE

# ACM's imported certificates may be valid for up to 13 months as public ones are; a
# year is plenty for a sandbox, and QA warns 14 days before expiry.
LIFETIME = dt.timedelta(days=365)


class NoAuthority(Exception):
    """The sandbox's CA is not in the state folder (its daemon has not started there)."""


@dataclass(frozen=True)
class Issued:
    """A certificate for ACM's ImportCertificate, PEM-encoded."""

    certificate: bytes
    private_key: bytes
    chain: bytes


def issue(state: Path, domain: str, alternative_names: tuple[str, ...] = ()) -> Issued:
    """A certificate for `domain` and `alternative_names` (subjectAltName DNS names; a
    wildcard such as *.example.com is one), signed by the CA in `state`."""
    try:
        authority = x509.load_pem_x509_certificate((state / CA_CERTIFICATE_FILE).read_bytes())
        authority_key = serialization.load_pem_private_key(
            (state / CA_KEY_FILE).read_bytes(), password=None
        )
    except (OSError, ValueError) as error:
        raise NoAuthority(f"no sandbox CA in {state}: {error}") from error
    if not isinstance(authority_key, ec.EllipticCurvePrivateKey):
        raise NoAuthority(f"the sandbox CA's key in {state} is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())  # ACM imports EC P-256 keys
    names = list(dict.fromkeys((domain, *alternative_names)))
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(authority.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + LIFETIME, authority.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority_key.public_key()),
            critical=False,
        )
        .sign(authority_key, hashes.SHA256())
    )
    return Issued(
        certificate=certificate.public_bytes(serialization.Encoding.PEM),
        private_key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        chain=authority.public_bytes(serialization.Encoding.PEM),
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
    descriptor, staging = tempfile.mkstemp(prefix=".trust-", dir=state)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(trusted.rstrip(b"\n") + b"\n" + ca if trusted else ca)
        os.chmod(staging, 0o644)
        os.replace(staging, bundle)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return bundle
