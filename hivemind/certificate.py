"""The certificate an HTTPS deployment serves, checked before anything is created.

A load balancer's HTTPS listener takes only an ACM certificate that is ISSUED, in the
load balancer's own region; CloudFormation finds out only when it creates the listener,
after the network (and the database) it waits for, and then rolls everything back. QA
checks HTTPS for `access.domain`, which the certificate must cover. `check` asks ACM
(DescribeCertificate) first, and says what is wrong in one line.
"""

from __future__ import annotations

from typing import Any

from hivemind.errors import BadInputError
from hivemind.spec import DeploymentSpec


def covers(pattern: str, name: str) -> bool:
    """Whether a certificate name (`example.com`, or a wildcard `*.example.com`) covers
    `name`: a wildcard stands for exactly one leftmost label (RFC 6125, section 6.4.3;
    ACM's wildcard names work the same way)."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        label, _, rest = name.partition(".")
        return bool(label) and rest == pattern[2:]
    return pattern == name


def check(acm: Any, spec: DeploymentSpec) -> None:
    """BadInputError unless the spec's certificate is issued, in the deployment's region,
    and covers its domain (nothing to check without a certificate)."""
    arn, domain = spec.access.certificate_arn, spec.access.domain
    if arn is None:
        return
    region = arn.split(":")[3]
    if region != spec.region:
        raise BadInputError(
            f"the certificate is in {region}, the deployment in {spec.region}",
            where="--certificate-arn",
            cause="a load balancer serves only certificates from ACM in its own region",
            next_step=f"request (or import) a certificate for {domain} in ACM in "
            f"{spec.region}, and give its ARN",
        )
    import botocore.exceptions

    try:
        described = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    except botocore.exceptions.ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise BadInputError(
                f"ACM in {region} has no certificate {arn}",
                where="--certificate-arn",
                next_step=f"`aws acm list-certificates --region {region}` lists the ones it has",
            ) from None
        raise
    status = str(described.get("Status") or "")
    if status != "ISSUED":
        raise BadInputError(
            f"the certificate for {described.get('DomainName')} is {status}, not ISSUED",
            where="--certificate-arn",
            cause="a load balancer takes only an issued certificate (ELB answers "
            "UnsupportedCertificate otherwise)",
            next_step="finish its validation (the CNAME record ACM asks for, `aws acm "
            f"describe-certificate --certificate-arn {arn}`), then deploy again",
        )
    names = [str(n) for n in described.get("SubjectAlternativeNames") or []]
    names = names or [str(described.get("DomainName") or "")]
    if domain is not None and not any(covers(name, domain) for name in names):
        raise BadInputError(
            f"the certificate does not cover {domain}: it is for {', '.join(names)}",
            where="--domain",
            next_step=f"give the domain the certificate is for, or a certificate for {domain}",
        )
