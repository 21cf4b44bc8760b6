"""The on-box deploy as a user runs it, against the sandbox daemon: each bundled example
deployed, answering through the load balancer's URL, verified and destroyed; a host key
that does not match is refused; a failing build and an app that never gets healthy each
end `failed` at the deploy stage with the reason, and a retry resumes there."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from harness import EXAMPLES, fast_example, run_cli
from sandbox_harness import Clients

from hivemind.deployer.access import AccessError, Instance, connect
from hivemind.sandbox import control

pytestmark = [pytest.mark.sandbox, pytest.mark.e2e]

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def home(sandbox_home: Path) -> Path:
    return sandbox_home


@pytest.fixture
def env(sandbox_env: dict[str, str]) -> dict[str, str]:
    return sandbox_env


def aws(home: Path) -> Clients:
    info = control.status(home)
    assert info is not None
    return Clients.of(info, "us-east-1")


def deploy(env: dict[str, str], app: Path, *extra: str) -> tuple[Any, str]:
    result = run_cli(
        "deploy", str(app), "--stage-1", "--yes", "--region", "us-east-1", *extra, env=env
    )
    line = next(x for x in result.stderr.splitlines() if x.startswith("Deployment "))
    return result, line.split()[1]


def status(env: dict[str, str], ident: str) -> dict[str, Any]:
    result = run_cli("status", ident, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def get(url: str) -> tuple[int, str]:
    with _NO_PROXY.open(url, timeout=10) as answer:
        return answer.status, answer.read().decode()


def post(url: str, body: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with _NO_PROXY.open(request, timeout=10) as answer:
        return answer.status, answer.read().decode()


def closed(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
    except OSError:
        return True
    return False


def destroy(env: dict[str, str], home: Path, ident: str) -> None:
    destroyed = run_cli("destroy", ident, "--yes", "--skip-snapshot", env=env)
    assert destroyed.returncode == 0, destroyed.stderr[-3000:]
    assert not (home / "deployments" / ident / "ssh" / "id_ed25519").exists()


def test_flask_and_postgres_answer_through_the_load_balancer(
    env: dict[str, str], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed, ident = deploy(env, fast_example("flask-notes"))
    assert deployed.returncode == 0, deployed.stderr[-4000:]
    state = status(env, ident)
    assert state["status"] == "deployed"
    assert [s["name"] for s in state["stages"]] == ["synth", "provision", "deploy", "verify"]
    url = state["url"]
    assert url.startswith("http://127.") and f"url:  {url}" in deployed.stdout

    # The app's own content, through the load balancer; a note written and read back
    # goes through the real database server behind the RDS instance.
    code, body = get(url + "/")
    assert code == 200 and json.loads(body)["app"] == "flask-notes"
    assert post(url + "/notes", {"text": "hello from the test"})[0] == 201
    code, body = get(url + "/notes")
    assert code == 200 and [n["text"] for n in json.loads(body)] == ["hello from the test"]

    checks = {c["name"]: c["status"] for c in state["checks"]}
    assert checks["http health"] == checks["http /"] == checks["database"] == "passed"
    assert checks["tls"] == "not_applicable"
    assert all(v in ("passed", "not_applicable") for v in checks.values()), checks
    [release] = state["releases"]
    assert set(release["seconds"]) == {"upload", "build", "start", "healthy"}
    assert release["release_id"] == state["source"]["release_id"]

    # No secret value anywhere under HIVEMIND_HOME, in events.log, or in the output.
    secret = aws(home).secretsmanager.get_secret_value(
        SecretId=state["outputs"]["DatabaseSecretArn"]
    )["SecretString"]
    password = json.loads(secret)["password"]
    assert password not in deployed.stdout + deployed.stderr
    for path in (home / "deployments" / ident).rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path

    # A host that presents another key than the one it printed at boot is refused.
    known_hosts = home / "deployments" / ident / "ssh" / "known_hosts"
    pinned = known_hosts.read_text()
    host, key_type, _key = pinned.split()
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIGm4lFOnD6MWwBpmHuO0mmb1B6mZtKxxTfmJYWdKMbGR"
    known_hosts.write_text(f"{host} {key_type} {other}\n")
    address = host.strip("[").split("]")[0]
    info = control.status(home)
    assert info is not None
    for name, value in control.environment(info).items():  # this process talks to it too
        monkeypatch.setenv(name, value)
    with pytest.raises(AccessError, match="does not match"):
        connect(Instance(release["instance_id"], address, address), home / "deployments" / ident)
    known_hosts.write_text(pinned)

    # The build ran as the app's own user (which the user data creates), not as root;
    # root only lent it the release's folder and took it back (the host's sudo log).
    host_dir = control.state_dir(home) / "run" / "hosts" / release["instance_id"]
    assert (host_dir / "users").read_text().split() == ["root", "ec2-user", "hm-flask-notes"]
    sudo = (host_dir / "sudo.log").read_text().splitlines()
    builds = [line for line in sudo if "pip install" in line]
    assert len(builds) == 1 and " ; USER=hm-flask-notes ; COMMAND=bash -c " in builds[0]
    assert not any("pip install" in line and "USER=root" in line for line in sudo)
    folder = f"/opt/hivemind/flask-notes/releases/{release['release_id']}"
    assert sudo.index(next(x for x in sudo if f"chown -hR root:root {folder}" in x)) > sudo.index(
        builds[0]
    )

    destroy(env, home, ident)
    with pytest.raises(OSError):
        get(url + "/")


def test_express_answers_https_for_its_domain_through_the_load_balancer(
    env: dict[str, str], home: Path
) -> None:
    # A certificate for the domain, as an operator brings one: issued by the sandbox's
    # CA and imported into its ACM.
    issued = run_cli("sandbox", "certificate", "hello.example.test", "--json", env=env)
    assert issued.returncode == 0, issued.stderr
    arn = json.loads(issued.stdout)["certificate_arn"]
    deployed, ident = deploy(
        env,
        fast_example("express-hello"),
        "--certificate-arn",
        arn,
        "--domain",
        "hello.example.test",
    )
    assert deployed.returncode == 0, deployed.stderr[-4000:]
    state = status(env, ident)
    assert state["url"] == "https://hello.example.test"
    balancer = state["outputs"]["LoadBalancerDns"]
    assert f"point hello.example.test at {balancer}" in deployed.stdout
    checks = {c["name"]: c for c in state["checks"]}
    # QA asked for the domain: TLS named it (SNI) and verified the certificate for it.
    assert checks["tls"]["status"] == "passed"
    assert "valid certificate for hello.example.test" in checks["tls"]["detail"]
    assert checks["http health"]["detail"].startswith("GET https://hello.example.test/health")
    assert checks["http redirect"]["status"] == "passed", checks["http redirect"]
    assert "301 to https://hello.example.test" in checks["http redirect"]["detail"]
    assert checks["database"]["status"] == "not_applicable"
    assert all(c["status"] in ("passed", "not_applicable") for c in checks.values()), checks

    # A browser's view: the load balancer's address, the domain's name, and the trust
    # store the sandbox's environment names (the system's CAs and the sandbox's).
    info = control.status(home)
    assert info is not None and info.trust_bundle is not None
    assert control.environment(info)["SSL_CERT_FILE"] == str(info.trust_bundle)
    trusted = ssl.create_default_context(cafile=str(info.trust_bundle))
    with (
        socket.create_connection((balancer, 443), timeout=10) as raw,
        trusted.wrap_socket(raw, server_hostname="hello.example.test") as secured,
    ):
        secured.sendall(b"GET / HTTP/1.1\r\nHost: hello.example.test\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := secured.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert json.loads(body)["app"] == "express-hello"
    # The certificate is for the domain, not for the load balancer's own name.
    with (
        socket.create_connection((balancer, 443), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="match"),
    ):
        trusted.wrap_socket(raw, server_hostname=balancer)
    destroy(env, home, ident)


def test_a_failing_build_fails_the_deploy_stage_and_retry_resumes_there(
    env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    app = tmp_path / "flask-notes"
    shutil.copytree(fast_example("flask-notes"), app)
    (app / "requirements.txt").write_text("flask>=3,<4\nno-such-package-hivemind==0.0.1\n")
    failed, ident = deploy(env, app)
    assert failed.returncode == 1
    assert "build failed on i-" in failed.stderr
    assert "exit code" in failed.stderr and "no-such-package-hivemind" in failed.stderr
    assert f"hivemind retry {ident}" in failed.stderr
    state = status(env, ident)
    assert (state["status"], state["failed_stage"]) == ("failed", "deploy")
    # Medic names the cause and how to reproduce it (the spec's build command).
    assert state["diagnosis"]["cause"] == "build_failure"
    assert "pip install -r requirements.txt" in (state["diagnosis"]["fix"]["command"] or "")
    assert "Medic:" in failed.stdout

    # Retried unchanged, it fails again at the same stage; after three retries a fourth
    # is refused until --force says the operator means it.
    for attempt in (1, 2, 3):
        again = run_cli("retry", ident, "--yes", env=env)
        assert again.returncode == 1, again.stderr[-3000:]
        assert status(env, ident)["retry_count"] == attempt
    refused = run_cli("retry", ident, "--yes", env=env)
    assert refused.returncode == 3, refused.stderr[-3000:]
    assert f"{ident} has been retried 3 times" in refused.stderr
    assert f"hivemind retry {ident} --force" in refused.stderr
    assert "no-such-package-hivemind" in refused.stderr  # the last failure, named

    shutil.copy(EXAMPLES / "flask-notes" / "requirements.txt", app / "requirements.txt")
    retried = run_cli("retry", ident, "--yes", "--force", env=env)
    assert retried.returncode == 0, retried.stderr[-4000:]
    state = status(env, ident)
    assert state["status"] == "deployed"
    assert state["retry_count"] == 4
    names = [s["name"] for s in state["stages"]]
    assert names.count("provision") == 1  # no retry provisioned again
    assert names[-2:] == ["deploy", "verify"]
    assert [e["how"] for e in state["history"]] == ["deploy"]
    # Every command that changed the deployment left its report in the record.
    report = Path(home, "deployments", ident, "report.md").read_text()
    assert "deployed" in report and "Releases in service" in report
    assert get(state["url"] + "/health")[0] == 200
    destroy(env, home, ident)


def test_an_app_that_never_gets_healthy_is_reported_with_its_log(
    env: dict[str, str], home: Path
) -> None:
    ran = run_cli("sandbox", "fault", "--on", "health", "--times", "1000", env=env)
    assert ran.returncode == 0, ran.stderr
    failed, ident = deploy(env, fast_example("express-hello"), "--health-timeout", "40")
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "did not report every instance healthy" in failed.stderr
    assert "Target.FailedHealthChecks" in failed.stderr
    assert "app log of i-" in failed.stderr and "express-hello listening" in failed.stderr
    state = status(env, ident)
    assert (state["status"], state["failed_stage"]) == ("failed", "deploy")
    assert state["diagnosis"]["cause"] == "timeout"
    assert "--health-timeout" in state["diagnosis"]["fix"]["command"]
    run_cli("sandbox", "fault", "--clear", env=env)
    destroy(env, home, ident)


def test_an_ssh_host_that_refuses_fails_the_deploy_stage(env: dict[str, str], home: Path) -> None:
    run_cli("sandbox", "fault", "--on", "connect", "--times", "1000", env=env)
    failed, ident = deploy(env, fast_example("express-hello"))
    assert failed.returncode == 1
    assert "cannot reach i-" in failed.stderr and "over SSH" in failed.stderr
    state = status(env, ident)
    assert (state["status"], state["failed_stage"]) == ("failed", "deploy")
    run_cli("sandbox", "fault", "--clear", env=env)
    destroy(env, home, ident)


def test_fastapi_and_mysql_answer_through_the_load_balancer(
    env: dict[str, str], home: Path
) -> None:
    # The sandbox's hosts have this machine's Python (3.11), not the 3.12 the example pins.
    deployed, ident = deploy(env, fast_example("fastapi-mysql"), "--runtime-version", "3.11")
    assert deployed.returncode == 0, deployed.stderr[-4000:]
    url = status(env, ident)["url"]
    assert post(url + "/items", {"name": "kettle"})[0] == 201
    code, body = get(url + "/items")
    assert code == 200 and [i["name"] for i in json.loads(body)] == ["kettle"]
    checks = {c["name"]: c["status"] for c in status(env, ident)["checks"]}
    assert checks["database"] == "passed"
    destroy(env, home, ident)


def test_production_instances_are_reached_through_the_instance_connect_endpoint(
    env: dict[str, str], home: Path
) -> None:
    result = run_cli(
        "deploy", str(fast_example("flask-notes")), "--yes", "--region", "us-east-1", env=env
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ident = next(x for x in result.stderr.splitlines() if x.startswith("Deployment ")).split()[1]
    state = status(env, ident)
    assert state["profile"] == "production" and "ConnectEndpointId" in state["outputs"]
    # Two private instances (no public address, no SSH rule from any address range),
    # both running the release behind the load balancer.
    instances = aws(home).ec2.describe_instances(
        InstanceIds=[r["instance_id"] for r in state["releases"]]
    )["Reservations"]
    found = [i for r in instances for i in r["Instances"]]
    assert len(found) == 2 and all("PublicIpAddress" not in i for i in found)
    assert post(state["url"] + "/notes", {"text": "through the tunnel"})[0] == 201
    assert all(c["status"] != "failed" for c in state["checks"])
    destroy(env, home, ident)
