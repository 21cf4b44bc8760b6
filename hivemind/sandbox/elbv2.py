"""The sandbox's Elastic Load Balancing v2 resource types: application load balancers,
their listeners and target groups (with their targets and attributes), served for real
by `hivemind.sandbox.forwarder`.

* A load balancer gets a loopback address of its own (127.x.y.1), which is its DNSName
  in the stack and in DescribeLoadBalancers, so `http://<DNSName>/` reaches it.
* An HTTP listener is a reverse proxy on that address and the listener's port. An HTTPS
  listener is one too when its certificate is in the sandbox's ACM (requested or
  imported there, key included); any other certificate or protocol fails the resource
  with a status reason saying the sandbox serves HTTP only.
* Listener rules, from a stack or CreateRule, are evaluated by their listener's
  forwarder before its default action; a stack's rule with a condition the forwarder
  cannot evaluate fails with a reason saying so.
* DescribeTargetHealth reports the states of real health checks (`install()` patches
  moto's backend), and RegisterTargets / DeregisterTargets, from a stack or called
  directly, take effect at once: a new target gets its first check right away, a
  deregistered one drains.

Listeners, listener rules and target groups update in place, as on AWS, so a blue-green
switch (the listener's default action and the standby rule trading target groups) keeps
every ARN, and the forwarder sends the next request to the new group.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from moto.elbv2.exceptions import (
    InvalidActionTypeError,
    TargetGroupNotFoundError,
    ValidationError,
)
from moto.elbv2.models import (
    ALLOWED_ACTIONS,
    ELBv2Backend,
    FakeHealthStatus,
    elbv2_backends,
)

from hivemind.sandbox import patching, runtime
from hivemind.sandbox.forwarder import (
    HEALTH,
    RULES_EVALUATED,
    ListenerUnavailable,
    LocalBalancer,
    TargetStatus,
    UnsupportedCondition,
    check_condition,
    local_balancer,
)
from hivemind.sandbox.provisioning import (
    Context,
    MotoBackend,
    Provisioned,
    ResourceFailed,
    ResourceType,
    implements,
    tag_list,
)


def _elbv2(ctx: Context) -> MotoBackend:
    return elbv2_backends[ctx.account_id][ctx.region]


def _key_values(items: list[dict[str, Any]] | None) -> dict[str, str]:
    return {item["Key"]: str(item["Value"]) for item in items or []}


class OperationNotPermitted(Exception):
    code = "OperationNotPermitted"


@implements
class LoadBalancer(ResourceType):
    type_name = "AWS::ElasticLoadBalancingV2::LoadBalancer"
    attributes = frozenset(
        {"CanonicalHostedZoneID", "DNSName", "LoadBalancerArn", "LoadBalancerFullName"}
        | {"LoadBalancerName", "SecurityGroups"}
    )

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        elbv2 = _elbv2(ctx)
        name = properties.get("Name") or ctx.generated_name(32)
        balancer = elbv2.create_load_balancer(
            name,
            list(properties.get("SecurityGroups") or []),
            list(properties.get("Subnets") or []),
            subnet_mappings=properties.get("SubnetMappings"),
            scheme=properties.get("Scheme", "internet-facing"),
            loadbalancer_type=properties.get("Type", "application"),
            ip_address_type=properties.get("IpAddressType", "ipv4"),
            tags=tag_list(ctx.tags(properties)),
        )
        try:
            local = LocalBalancer.create(elbv2, balancer.arn)
        except Exception:
            elbv2.delete_load_balancer(balancer.arn)
            raise
        balancer.dns_name = local.address  # what DescribeLoadBalancers shows
        try:
            attributes = _key_values(properties.get("LoadBalancerAttributes"))
            if attributes:
                elbv2.modify_load_balancer_attributes(balancer.arn, attributes)
        except Exception:
            local.close()
            elbv2.delete_load_balancer(balancer.arn)
            raise

        def delete() -> None:
            if balancer.attrs.get("deletion_protection.enabled") == "true":
                raise OperationNotPermitted(
                    f"Load balancer '{balancer.arn}' cannot be deleted because deletion "
                    "protection is enabled"
                )
            elbv2.delete_load_balancer(balancer.arn)  # and its listeners, as on AWS
            local.close()

        return Provisioned(
            balancer.arn,
            delete=delete,
            native=balancer,
            attributes={
                "LoadBalancerArn": balancer.arn,
                "DNSName": local.address,
                "LoadBalancerName": balancer.name,
                # arn:...:loadbalancer/app/<name>/<id> -> app/<name>/<id>
                "LoadBalancerFullName": balancer.arn.split(":loadbalancer/", 1)[1],
                "CanonicalHostedZoneID": balancer.canonical_hosted_zone_id,
                "SecurityGroups": list(balancer.security_groups),
            },
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        if not all(
            old.properties.get(key, default) == properties.get(key, default)
            for key, default in (("Name", None), ("Scheme", "internet-facing"), ("Type", None))
        ):
            return self.create(properties, ctx)
        elbv2 = _elbv2(ctx)
        arn = old.physical_resource_id
        elbv2.set_security_groups(arn, list(properties.get("SecurityGroups") or []))
        elbv2.set_subnets(
            arn, list(properties.get("Subnets") or []), properties.get("SubnetMappings") or []
        )
        attributes = _key_values(properties.get("LoadBalancerAttributes"))
        if attributes:
            elbv2.modify_load_balancer_attributes(arn, attributes)
        return old.rebind(attributes={"SecurityGroups": list(old.native.security_groups)})


@implements
class TargetGroup(ResourceType):
    type_name = "AWS::ElasticLoadBalancingV2::TargetGroup"
    attributes = frozenset(
        {"LoadBalancerArns", "TargetGroupArn", "TargetGroupFullName", "TargetGroupName"}
    )

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        elbv2 = _elbv2(ctx)
        _check_health_check_limits(properties)
        name = properties.get("Name") or ctx.generated_name(32)
        group = elbv2.create_target_group(
            name,
            vpc_id=properties.get("VpcId"),
            protocol=properties.get("Protocol"),
            protocol_version=properties.get("ProtocolVersion"),
            port=properties.get("Port"),
            healthcheck_protocol=properties.get("HealthCheckProtocol"),
            healthcheck_port=properties.get("HealthCheckPort"),
            healthcheck_path=properties.get("HealthCheckPath"),
            healthcheck_interval_seconds=properties.get("HealthCheckIntervalSeconds"),
            healthcheck_timeout_seconds=properties.get("HealthCheckTimeoutSeconds"),
            healthcheck_enabled=properties.get("HealthCheckEnabled"),
            healthy_threshold_count=properties.get("HealthyThresholdCount"),
            unhealthy_threshold_count=properties.get("UnhealthyThresholdCount"),
            matcher=properties.get("Matcher"),
            ip_address_type=properties.get("IpAddressType"),
            target_type=properties.get("TargetType", "instance"),
            tags=tag_list(ctx.tags(properties)),
        )
        self._configure(elbv2, group.arn, properties)
        return Provisioned(
            group.arn,
            delete=lambda: elbv2.delete_target_group(group.arn),
            native=group,
            attributes={
                "TargetGroupArn": group.arn,
                "TargetGroupName": group.name,
                # arn:...:targetgroup/<name>/<id> -> targetgroup/<name>/<id>
                "TargetGroupFullName": "targetgroup/" + group.arn.split(":targetgroup/", 1)[1],
                "LoadBalancerArns": group.load_balancer_arns,
            },
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        # Targets and attributes change in place; a new name or VPC means a new group.
        group = old.native
        if properties.get("Name", group.name) != group.name or properties.get("VpcId") != getattr(
            group, "vpc_id", None
        ):
            return super().update(old, properties, ctx)
        _check_health_check_limits(properties)
        elbv2 = _elbv2(ctx)
        # The health check changes in place too; the next check uses it.
        elbv2.modify_target_group(
            group.arn,
            health_check_proto=properties.get("HealthCheckProtocol"),
            health_check_port=properties.get("HealthCheckPort"),
            health_check_path=properties.get("HealthCheckPath"),
            health_check_interval=properties.get("HealthCheckIntervalSeconds"),
            health_check_timeout=properties.get("HealthCheckTimeoutSeconds"),
            healthy_threshold_count=properties.get("HealthyThresholdCount"),
            unhealthy_threshold_count=properties.get("UnhealthyThresholdCount"),
            http_codes=(properties.get("Matcher") or {}).get("HttpCode"),
            health_check_enabled=properties.get("HealthCheckEnabled"),
        )
        self._configure(elbv2, group.arn, properties)
        return old

    @staticmethod
    def _configure(elbv2: MotoBackend, arn: str, properties: dict[str, Any]) -> None:
        attributes = _key_values(properties.get("TargetGroupAttributes"))
        if attributes:
            elbv2.modify_target_group_attributes(arn, attributes)
        wanted = [
            {"Id": t["Id"], **({"Port": t["Port"]} if "Port" in t else {})}
            for t in properties.get("Targets") or []
        ]
        group = elbv2.target_groups[arn]
        stale = [{"Id": i} for i in group.targets if i not in {t["Id"] for t in wanted}]
        if stale:
            elbv2.deregister_targets(arn, stale)
        if wanted:
            elbv2.register_targets(arn, wanted)


# AWS's limits for an application load balancer's target group health check; the sandbox
# keeps them, so a template it accepts is one AWS accepts (and its timing is AWS's).
_HEALTH_CHECK_LIMITS = {
    "HealthCheckIntervalSeconds": (5, 300),
    "HealthCheckTimeoutSeconds": (2, 120),
    "HealthyThresholdCount": (2, 10),
    "UnhealthyThresholdCount": (2, 10),
}


def _check_health_check_limits(properties: dict[str, Any]) -> None:
    for key, (low, high) in _HEALTH_CHECK_LIMITS.items():
        value = properties.get(key)
        if value is None or low <= int(value) <= high:
            continue
        field = key[0].lower() + key[1:]
        bound = (
            f"greater than or equal to {low}"
            if int(value) < low
            else f"less than or equal to {high}"
        )
        raise ValidationError(
            f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy "
            f"constraint: Member must have value {bound}"
        )


@implements
class Listener(ResourceType):
    """A listener, served by a forwarder on its balancer's address (see the module's
    docstring for which protocols)."""

    type_name = "AWS::ElasticLoadBalancingV2::Listener"
    attributes = frozenset({"ListenerArn"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        elbv2 = _elbv2(ctx)
        tls = _tls_context(ctx, properties)
        certificates = elbv2.convert_and_validate_certificates(properties.get("Certificates"))
        listener = elbv2.create_listener(
            properties["LoadBalancerArn"],
            properties.get("Protocol"),
            properties.get("Port"),
            properties.get("SslPolicy"),
            certificates[0]["CertificateArn"] if certificates else None,
            _actions(properties["DefaultActions"]),
            alpn_policy=properties.get("AlpnPolicy"),
        )
        try:
            _serve(ctx, elbv2, listener, tls)
        except ResourceFailed:
            elbv2.delete_listener(listener.arn)
            raise
        return Provisioned(
            listener.arn,
            delete=lambda: _delete_listener(elbv2, listener),
            native=listener,
            attributes={"ListenerArn": listener.arn},
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        listener = old.native
        if properties["LoadBalancerArn"] != listener.load_balancer_arn:
            return super().update(old, properties, ctx)
        elbv2 = _elbv2(ctx)
        tls = _tls_context(ctx, properties)
        served_as = (str(listener.port), listener.protocol, listener.certificate)
        elbv2.modify_listener(
            listener.arn,
            properties.get("Port"),
            properties.get("Protocol"),
            properties.get("SslPolicy"),
            elbv2.convert_and_validate_certificates(properties.get("Certificates")),
            _actions(properties["DefaultActions"]),
        )
        # New default actions apply to the next request; a new port, protocol or
        # certificate needs the forwarder bound again.
        if (str(listener.port), listener.protocol, listener.certificate) != served_as:
            _serve(ctx, elbv2, listener, tls, "update")
        return old


# What a listener's or a rule's action keeps of its template properties (moto's own
# conversion drops ForwardConfig, so weighted forwards would lose their target groups).
_ACTION_KEYS = (
    "Type",
    "Order",
    "TargetGroupArn",
    "ForwardConfig",
    "RedirectConfig",
    "FixedResponseConfig",
    "AuthenticateCognitoConfig",
    "AuthenticateOidcConfig",
)


def _actions(declared: list[dict[str, Any]]) -> list[dict[str, Any]]:
    actions = []
    for index, action in enumerate(declared, 1):
        if action.get("Type") not in ALLOWED_ACTIONS:
            raise InvalidActionTypeError(action.get("Type"), index)
        actions.append({key: action[key] for key in _ACTION_KEYS if key in action})
    return actions


@implements
class ListenerRule(ResourceType):
    """A listener rule: the listener's forwarder evaluates it on every request, before
    the default action (see `hivemind.sandbox.forwarder.rule_matches` for its
    conditions). Conditions, actions and priority change in place, as on AWS; a rule
    for another listener is a new rule."""

    type_name = "AWS::ElasticLoadBalancingV2::ListenerRule"
    attributes = frozenset({"IsDefault", "RuleArn"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        elbv2 = _elbv2(ctx)
        conditions = _conditions(ctx, properties)
        rule = elbv2.create_rule(
            properties["ListenerArn"],
            conditions,
            _priority(properties),
            _actions(properties["Actions"]),
        )
        return Provisioned(
            rule.arn,
            # Deleting a listener deletes its rules (a no-op then, as on AWS).
            delete=lambda: elbv2.delete_rule(rule.arn),
            native=rule,
            attributes={"RuleArn": rule.arn, "IsDefault": False},
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        rule = old.native
        if properties["ListenerArn"] != rule.listener_arn:
            return super().update(old, properties, ctx)
        elbv2 = _elbv2(ctx)
        conditions = _conditions(ctx, properties, "update")
        before = (rule.conditions, rule.actions)
        # moto's modify_rule leaves Priority alone; SetRulePriorities changes it.
        elbv2.modify_rule(rule.arn, conditions, _actions(properties["Actions"]))
        priority = _priority(properties)
        if priority != int(rule.priority):
            try:
                elbv2.set_rule_priorities([{"RuleArn": rule.arn, "Priority": priority}])
            except Exception:
                rule.conditions, rule.actions = before  # the update fails as a whole
                raise
        return old


def _priority(properties: dict[str, Any]) -> int:
    # Templates give it as a number or a string; moto compares priorities as given.
    return int(properties["Priority"])


def _conditions(
    ctx: Context, properties: dict[str, Any], operation: str = "create"
) -> list[dict[str, Any]]:
    """A rule's conditions; ResourceFailed for one the forwarder cannot evaluate (rather
    than a rule that answers 500 to every request reaching it, or moto failing on
    RegexValues with a KeyError)."""
    conditions = [dict(condition) for condition in properties.get("Conditions") or []]
    try:
        for condition in conditions:
            check_condition(condition)
    except UnsupportedCondition as error:
        raise ResourceFailed(
            ctx.logical_id, f"The sandbox cannot evaluate {error}: {RULES_EVALUATED}", operation
        ) from error
    return conditions


SERVES_HTTP_ONLY = (
    "The sandbox's load balancers serve HTTP, and HTTPS only with a certificate from the "
    "sandbox's own ACM (request or import one there)"
)


def _tls_context(ctx: Context, properties: dict[str, Any]) -> ssl.SSLContext | None:
    """The TLS set-up of an HTTPS listener (None for HTTP); ResourceFailed for any other
    protocol, or a certificate ELB would refuse.

    As Elastic Load Balancing answers CreateListener / ModifyListener (seen in users'
    reports: aws/aws-cdk#6081, hashicorp/terraform-provider-aws#41789,
    DataBiosphere/azul#8321): a certificate ACM does not hold is `CertificateNotFound`
    ("Certificate '<arn>' not found"), and one ACM holds but has not issued (a requested
    certificate still PENDING_VALIDATION, or a failed, expired or revoked one) is
    `UnsupportedCertificate`, whose message names the domain, signature and key size
    whatever the cause."""
    protocol = str(properties.get("Protocol") or "HTTP").upper()
    if protocol == "HTTP":
        return None
    if protocol != "HTTPS":
        raise ResourceFailed(ctx.logical_id, f"{SERVES_HTTP_ONLY}; not {protocol}")
    from moto.acm.models import acm_backends

    certificates = properties.get("Certificates") or []
    arn = str(certificates[0].get("CertificateArn") or "") if certificates else ""
    if not arn:
        raise ResourceFailed(
            ctx.logical_id,
            "A certificate must be specified for HTTPS listeners (Service: "
            "ElasticLoadBalancingV2, Status Code: 400, Error Code: ValidationError)",
        )
    parts = arn.split(":")
    try:
        bundle = acm_backends[parts[4]][parts[3]].get_certificate(arn)
    except Exception as error:
        raise ResourceFailed(
            ctx.logical_id,
            f"Certificate '{arn}' not found (Service: ElasticLoadBalancingV2, Status Code: "
            f"400, Error Code: CertificateNotFound). {SERVES_HTTP_ONLY}",
        ) from error
    if bundle.status != "ISSUED":
        raise ResourceFailed(
            ctx.logical_id,
            f"The certificate '{arn}' must have a fully-qualified domain name, a supported "
            "signature, and a supported key size. (Service: ElasticLoadBalancingV2, Status "
            f"Code: 400, Error Code: UnsupportedCertificate) [ACM status {bundle.status}: "
            "a requested certificate is usable once validated; `hivemind sandbox "
            "certificate DOMAIN` imports one the sandbox's CA issued]",
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain reads files only: the key is written for as long as that takes,
    # readable by this user alone.
    pem = runtime.state_dir() / f".listener-{os.getpid()}-{id(context)}.pem"
    descriptor = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(bundle.cert.rstrip(b"\n") + b"\n" + bundle.key)
        context.load_cert_chain(pem)
    finally:
        pem.unlink(missing_ok=True)
    return context


def _serve(
    ctx: Context,
    elbv2: MotoBackend,
    listener: Any,
    tls: ssl.SSLContext | None,
    operation: str = "create",
) -> None:
    """Bind (or bind again) the listener's forwarder; ResourceFailed says why it cannot."""
    local = local_balancer(listener.load_balancer_arn)
    if local is None:  # a balancer the stack did not create (an imported ARN)
        local = LocalBalancer.create(elbv2, listener.load_balancer_arn)
        elbv2.load_balancers[listener.load_balancer_arn].dns_name = local.address
    try:
        local.open_listener(listener.arn, int(listener.port), listener.protocol, tls)
    except ListenerUnavailable as error:
        raise ResourceFailed(ctx.logical_id, str(error), operation) from error


def _delete_listener(elbv2: MotoBackend, listener: Any) -> None:
    local = local_balancer(listener.load_balancer_arn)
    if local is not None:
        local.close_listener(listener.arn)
    # The listener is already gone when its load balancer went first (AWS deletes a load
    # balancer's listeners with it); CloudFormation treats that as deleted.
    if any(listener.arn in balancer.listeners for balancer in elbv2.load_balancers.values()):
        elbv2.delete_listener(listener.arn)


# ---------------------------------------------------------------------------
# moto's API, with the forwarders' health checks


def _moto_status(status: TargetStatus) -> FakeHealthStatus:
    return FakeHealthStatus(
        status.target_id,
        str(status.port),
        str(status.health_check_port),
        status.state,
        status.reason,
        status.description,
    )


def _describe_target_health(
    self: ELBv2Backend, target_group_arn: str, targets: list[dict[str, Any]]
) -> list[FakeHealthStatus]:
    group = self.target_groups.get(target_group_arn)
    if group is None:
        raise TargetGroupNotFoundError()
    known = {status.target_id: status for status in HEALTH.describe(self, group)}
    if not targets:
        return [_moto_status(status) for status in known.values()]
    return [
        _moto_status(known[target["Id"]])
        if target["Id"] in known
        else group.health_for(target, self.ec2_backend)  # never registered or long gone
        for target in targets
    ]


_original_register_targets = ELBv2Backend.register_targets
_original_deregister_targets = ELBv2Backend.deregister_targets


def _register_targets(self: ELBv2Backend, target_group_arn: str, instances: list[Any]) -> None:
    _original_register_targets(self, target_group_arn, instances)
    HEALTH.sync(self, self.target_groups[target_group_arn])


def _deregister_targets(
    self: ELBv2Backend, target_group_arn: str, instances: list[dict[str, Any]]
) -> None:
    _original_deregister_targets(self, target_group_arn, instances)
    HEALTH.sync(self, self.target_groups[target_group_arn])


# moto's ACM marks a requested certificate ISSUED once it has waited 60 s, as if it had
# been validated; ACM issues it only once its DNS (or email) validation is done, and the
# sandbox emulates neither, so a requested certificate stays PENDING_VALIDATION. (ACM
# gives up after 72 hours, VALIDATION_TIMED_OUT, where moto would then issue it; no
# sandbox lives that long.)
ACM_VALIDATION_NEVER_COMES = 72 * 3600


def install() -> None:
    """Make moto's ELBv2 API report the health checks' target states, and take target
    registrations and deregistrations in at once; keep requested ACM certificates
    unvalidated (idempotent)."""
    from moto import settings

    settings.ACM_VALIDATION_WAIT = ACM_VALIDATION_NEVER_COMES
    patching.replace(ELBv2Backend, "describe_target_health", _describe_target_health)
    patching.replace(ELBv2Backend, "register_targets", _register_targets)
    patching.replace(ELBv2Backend, "deregister_targets", _deregister_targets)


# The sandbox's server imports this module (through `resources`) before it serves its
# first request; whoever imports the resource types gets their API behaviour with them.
install()
