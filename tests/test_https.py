"""HTTPS for the operator's domain: the spec names the domain a certificate is for, the
certificate is checked in ACM before anything is created, and QA checks HTTPS for the
domain (SNI, Host, the certificate verified for that name) at the load balancer's
address. The sandbox's side is in test_sandbox_forwarder.py and test_onbox_deploy.py."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from harness import make_spec
from pydantic import ValidationError

from hivemind import certificate, qa
from hivemind.errors import BadInputError
from hivemind.sandbox import certificates
from hivemind.spec import DeploymentSpec, Provenance, Source

ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/abcd-1234"


# --- the spec --------------------------------------------------------------------------


def test_a_certificate_needs_the_domain_it_is_for() -> None:
    recorded = make_spec("stage-1", "none", False, access={"certificate_arn": ARN})
    # A deployment recorded before access.domain existed still loads...
    assert DeploymentSpec.from_json(recorded.model_dump_json()).access.domain is None
    # ...but no new spec is made without the domain: from a spec file, or a change.
    with pytest.raises(ValidationError, match=r"access\.domain must name the domain the cert"):
        DeploymentSpec.from_json(recorded.model_dump_json(), new=True)
    with pytest.raises(BadInputError, match="the change would make the deployment spec invalid"):
        make_spec("stage-1", "none", False).with_changes(
            {"access.certificate_arn": ARN}, Provenance(source=Source.USER)
        )
    spec = make_spec(
        "stage-1", "none", False, access={"certificate_arn": ARN, "domain": "Shop.Example.COM."}
    )
    assert spec.access.domain == "shop.example.com"  # DNS names are case-insensitive


@pytest.mark.parametrize(
    "domain",
    ["localhost", "shop..example.com", "-shop.example.com", "shop.example.com/x",
     "shop.example.123", "*.example.com", "shop example.com", "xn--bcher-kva.ex\u00e4mple.com",
     f"{'a' * 64}.example.com", ("a" * 60 + ".") * 5 + "com"],
)  # fmt: skip
def test_a_domain_that_is_not_a_host_name_is_refused(domain: str) -> None:
    with pytest.raises(ValidationError):
        make_spec("stage-1", "none", False, access={"domain": domain})


def test_a_domain_without_a_certificate_is_plain_http_for_that_name() -> None:
    spec = make_spec("stage-1", "none", False, access={"domain": "xn--bcher-kva.example.com"})
    target = qa.target_of(spec, {"LoadBalancerDns": "lb.example.net"}, [])
    assert (target.url, target.host, target.listener_ports) == (
        "http://xn--bcher-kva.example.com",
        "lb.example.net",
        (80,),
    )


# --- the certificate, before anything is created ---------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "covered"),
    [
        ("shop.example.com", "shop.example.com", True),
        ("SHOP.example.com", "shop.example.com.", True),
        ("*.example.com", "shop.example.com", True),
        ("*.example.com", "example.com", False),  # a wildcard is one label, never none
        ("*.example.com", "a.shop.example.com", False),  # ...nor two
        ("example.com", "shop.example.com", False),
        ("shop.example.com", "shop.example.co", False),
    ],
)
def test_a_certificate_name_covers_a_domain_as_tls_matches_it(
    pattern: str, name: str, covered: bool
) -> None:
    assert certificate.covers(pattern, name) is covered


class _ACM:
    def __init__(self, answer: dict[str, Any] | None) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def describe_certificate(self, CertificateArn: str) -> dict[str, Any]:
        self.asked.append(CertificateArn)
        if self.answer is None:
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "ResourceNotFoundException", "Message": "not found"}},
                "DescribeCertificate",
            )
        return {"Certificate": self.answer}


def _https_spec(domain: str = "shop.example.com", arn: str = ARN) -> DeploymentSpec:
    return make_spec("stage-1", "none", False, access={"certificate_arn": arn, "domain": domain})


def test_an_issued_certificate_for_the_domain_passes() -> None:
    acm = _ACM(
        {
            "Status": "ISSUED",
            "DomainName": "example.com",
            "SubjectAlternativeNames": ["example.com", "*.example.com"],
        }
    )
    certificate.check(acm, _https_spec())
    assert acm.asked == [ARN]
    certificate.check(_ACM(None), make_spec("stage-1", "none", False))  # no certificate


@pytest.mark.parametrize(
    ("answer", "arn", "said", "where"),
    [
        (
            {"Status": "PENDING_VALIDATION", "DomainName": "shop.example.com"},
            ARN,
            "the certificate for shop.example.com is PENDING_VALIDATION, not ISSUED",
            "--certificate-arn",
        ),
        (
            {"Status": "ISSUED", "DomainName": "www.example.com",
             "SubjectAlternativeNames": ["www.example.com"]},
            ARN,
            "the certificate does not cover shop.example.com: it is for www.example.com",
            "--domain",
        ),
        (None, ARN, f"ACM in eu-west-1 has no certificate {ARN}", "--certificate-arn"),
        (
            {"Status": "ISSUED", "DomainName": "shop.example.com"},
            ARN.replace("eu-west-1", "us-east-1"),
            "the certificate is in us-east-1, the deployment in eu-west-1",
            "--certificate-arn",
        ),
    ],
)  # fmt: skip
def test_a_certificate_the_load_balancer_would_refuse_is_bad_input(
    answer: dict[str, Any] | None, arn: str, said: str, where: str
) -> None:
    with pytest.raises(BadInputError) as refused:
        certificate.check(_ACM(answer), _https_spec(arn=arn))
    assert str(refused.value) == said
    assert refused.value.where == where


# --- QA: HTTPS for the domain, at the load balancer's address --------------------------


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        seen = self.headers.get("Host", "")
        self.send_response(200 if seen.startswith("shop.example.com") else 421)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def authority(tmp_path: Path) -> Path:
    """A CA (what the sandbox daemon keeps in its folder): ca.pem, ca.key."""
    certificates.load_or_create_authority(tmp_path)
    return tmp_path


@pytest.fixture
def site(authority: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """An HTTPS server on 127.0.0.1 with a certificate for shop.example.com only."""
    issued = certificates.issue(authority, "shop.example.com")
    pem = tmp_path_factory.mktemp("site") / "site.pem"
    pem.write_bytes(issued.certificate + issued.private_key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def _checks(url: str) -> dict[str, Any]:
    spec = _https_spec()
    target = qa.Target(url, "127.0.0.1", (), (), None)
    return {r.name: r for r in qa.verify(spec, target, lambda _i, _c: (0, ""))}


def test_qa_asks_the_load_balancer_for_the_domain_and_verifies_its_certificate(
    site: int, authority: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(authority / "ca.pem"))  # the trust store
    results = _checks(f"https://shop.example.com:{site}")
    assert results["http health"].status == "passed", results["http health"]
    assert results["http health"].detail.startswith(
        f"GET https://shop.example.com:{site}/health: HTTP 200"
    )


def test_qa_fails_a_certificate_for_another_name_or_from_an_untrusted_ca(
    site: int, authority: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(authority / "ca.pem"))
    wrong_name = _checks(f"https://www.example.com:{site}")["http health"]
    assert wrong_name.status == "failed"
    assert "certificate not trusted: Hostname mismatch" in wrong_name.detail

    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.system_trust_store()))
    untrusted = _checks(f"https://shop.example.com:{site}")["http health"]
    assert untrusted.status == "failed"
    assert "certificate not trusted: unable to get local issuer certificate" in untrusted.detail


def test_the_trust_bundle_is_the_systems_store_and_the_sandboxs_ca(
    authority: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = certificates.write_trust_bundle(authority)
    text = bundle.read_bytes()
    system = certificates.system_trust_store(exclude=bundle)
    assert system is not None
    assert text.startswith(system.read_bytes().rstrip(b"\n"))
    assert text.endswith((authority / "ca.pem").read_bytes())
    # Written again while SSL_CERT_FILE names it (a daemon started from the sandbox's
    # environment), it does not include itself.
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert certificates.write_trust_bundle(authority).read_bytes() == text


def test_sandbox_certificate_refuses_what_is_not_a_domain_before_starting_anything(
    tmp_path: Path,
) -> None:
    from harness import run_cli

    env = {"HIVEMIND_HOME": str(tmp_path)}
    for args, where in (
        (("bad name",), "where: DOMAIN"),
        (("ok.example.test", "--alternative-name", "no..dots"), "where: --alternative-name"),
    ):
        refused = run_cli("sandbox", "certificate", *args, env=env)
        assert refused.returncode == 2, refused.stderr
        assert "is not a domain name" in refused.stderr and where in refused.stderr
    assert not (tmp_path / "sandbox").exists()  # no daemon was started
