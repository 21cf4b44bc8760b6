"""Deployer: how the on-box deploy went, step by step, and what a failure means.

Called after the deploy stage: with every instance's release (seconds per step:
upload, build, start, healthy) when it worked, and with the failed step's command,
exit code, stderr tail and the app's log tail when it did not (DeployFailed, or the load
balancer's TargetsUnhealthy). It says where the time went (the slowest step, an
instance much slower than the others), what would make the next deploy faster (a build
that dominates wants a lockfile or prebuilt packages), and, for a failure, which step
failed in plain words and the lines that show why.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from hivemind.deployer.release import read_details
from hivemind.errors import HiveMindError
from hivemind.records import InstanceRelease
from hivemind.spec import DeploymentSpec

from .base import Agent, Rejected

# What each step of hivemind/deployer/release.py does, for a person.
STEPS: dict[str, str] = {
    "upload": "copying the release archive to the instance and unpacking it into a new "
    "release folder",
    "build": "building the release on the instance (the virtualenv for Python, then the "
    "app's build command)",
    "configure": "writing the app's environment file (its port, and the database settings "
    "read from Secrets Manager) and its systemd unit",
    "start": "switching the current release and restarting the app's systemd service",
    "healthy": "waiting for the app to answer its health path on the instance itself, as "
    "the load balancer will check it (200-399)",
    "health check": "waiting for the app to answer its health path on the instance itself, "
    "as the load balancer will check it (200-399)",
    "drain": "taking the instance out of the load balancer and waiting while it drains "
    "(the target group's deregistration delay), before the release goes on it",
    "register": "putting the instance back into the load balancer and waiting until it "
    "reports the instance healthy",
    "prune": "removing releases older than the last three",
    "load balancer health check": "waiting for the load balancer to report every instance "
    "healthy on the app's health path",
}
SLOW_BUILD_SECONDS = 20.0
SLOW_START_SECONDS = 30.0
SLOW_UPLOAD_SECONDS = 30.0
SLOW_DRAIN_SECONDS = 20.0
SKEW_FACTOR = 2.0
SKEW_SECONDS = 15.0
_INSTANCE_ID = re.compile(r"\bi-[0-9a-f]{8,17}\b")
_BUILD_ADVICE = {
    "python": "pin exact versions in requirements.txt (a lock file from pip-tools or uv) and "
    "prefer packages that ship wheels, so pip downloads instead of compiling on each instance",
    "node": "commit package-lock.json so `npm ci` installs exactly it, and keep build-only "
    "tools in devDependencies",
    "go": "commit go.sum and vendor the modules (`go mod vendor`), so the build downloads nothing",
    "java": "Maven or Gradle downloads every dependency on each instance: pin versions and "
    "build a runnable jar once (the build command can then just copy it)",
    "ruby": "commit Gemfile.lock and prefer gems with precompiled platform versions",
}
# (words in the failure's text, what it means) — first match wins.
_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("no matching distribution found", "could not find a version that satisfies"),
     "a Python dependency could not be installed: check its name and version pin, and "
     "that it supports the app's Python version"),
    (("modulenotfounderror", "no module named"),
     "the app imports a module that is not installed: add it to the requirements"),
    (("cannot find module", "err_module_not_found"),
     "the app requires a Node module that is not installed: add it to dependencies (not "
     "devDependencies) in package.json"),
    (("npm err!", "npm error"),
     "npm could not install or build: `npm ci` needs a package-lock.json in step with "
     "package.json"),
    (("command not found",),
     "a command the build or start uses is not installed on the instance"),
    (("eaddrinuse", "address already in use"),
     "another process already holds the app's port"),
    (("memoryerror", "out of memory", "killed", "exit code 137"),
     "the instance ran out of memory: a bigger compute.instance_type, or a lighter build"),
    (("password authentication failed", "access denied for user"),
     "the app could not log in to the database with the credentials HiveMind provides "
     "(DATABASE_URL, DB_USER, DB_PASSWORD)"),
    (("did not answer",),
     "the app did not answer on its port: it must listen on 0.0.0.0 and the port HiveMind "
     "sets in $PORT"),
    (("could not connect to server", "econnrefused", "connection refused"),
     "something the app connects to (its own port, or the database) refused the connection"),
    (("responsecodemismatch",),
     "the load balancer's health check got an unexpected HTTP status: the health path must "
     "answer 200-399 (app.health_path)"),
    (("target.timeout", "request timed out"),
     "the load balancer's health check timed out: the app is not answering on its port"),
    (("permission denied",), "a file or folder the step needs is not accessible"),
    (("traceback",), "the app raised an exception; its last line says which"),
)  # fmt: skip


class DeployFailure(BaseModel):
    """What is known about a failed deploy step on one instance."""

    model_config = ConfigDict(frozen=True)

    instance_id: str
    step: str
    cause: str = ""
    command: str = ""
    exit_code: int | None = None
    stderr_tail: tuple[str, ...] = ()
    app_log_tail: tuple[str, ...] = ()

    @classmethod
    def from_error(cls, error: HiveMindError) -> DeployFailure:
        """From the deploy's DeployFailed (or the load balancer's TargetsUnhealthy)."""
        where = error.where or ""
        found = re.search(r"deploy, (?P<step>.+?) on (?P<instance>i-\S+)", where)
        if found:
            step, instance = found["step"], found["instance"]
        else:
            step = "load balancer health check" if "load balancer" in where else "deploy"
            ids = _INSTANCE_ID.findall(f"{error.cause or ''} {' '.join(error.details)}")
            instance = ids[0] if ids else ""
        lines = read_details(error.details)
        return cls(
            instance_id=instance,
            step=step,
            cause=error.cause or error.what,
            command=lines.command,
            exit_code=lines.exit_code,
            stderr_tail=lines.stderr,
            app_log_tail=lines.app_log,
        )

    def text(self) -> str:
        """Everything the failure says, as one text (what evidence must quote)."""
        return "\n".join(
            [self.cause, self.command, *self.stderr_tail, *self.app_log_tail, self.exit_line]
        )

    @property
    def exit_line(self) -> str:
        return f"exit code {self.exit_code}" if self.exit_code is not None else ""


class DeployerInput(BaseModel):
    """The per-instance release results, and the failure if the deploy failed."""

    model_config = ConfigDict(frozen=True)

    releases: tuple[InstanceRelease, ...] = ()
    failure: DeployFailure | None = None
    spec: DeploymentSpec | None = None


class StepTiming(BaseModel):
    """One deploy step across the instances."""

    step: str
    seconds: float = Field(description="the slowest instance's time for this step")
    instance_id: str = Field(description="the instance that took that long")
    mean_seconds: float = Field(description="the mean over the instances")


class FailureExplanation(BaseModel):
    """The failed step in plain words, and the lines that show why."""

    step: str = Field(description="the failed step, exactly as given")
    instance_id: str
    what_the_step_does: str
    what_went_wrong: str = Field(description="the cause in plain words, one or two sentences")
    evidence: list[str] = Field(
        description="lines copied exactly from the stderr or app log tail that show the cause"
    )


class DeployReport(BaseModel):
    """Deployer's answer."""

    succeeded: bool
    headline: str = Field(description="one sentence: what runs where, or what failed where")
    slowest_step: StepTiming | None = None
    steps: list[StepTiming] = Field(default_factory=list, description="every step, slowest first")
    notes: list[str] = Field(
        default_factory=list, description="what would make the next deploy faster or safer"
    )
    failure: FailureExplanation | None = None


def step_timings(releases: tuple[InstanceRelease, ...]) -> list[StepTiming]:
    """Each step's slowest instance and mean, slowest step first."""
    steps: dict[str, list[tuple[float, str]]] = {}
    for release in releases:
        for step, seconds in release.seconds.items():
            steps.setdefault(step, []).append((seconds, release.instance_id))
    timings = []
    for step, values in steps.items():
        seconds, instance = max(values)
        timings.append(
            StepTiming(
                step=step,
                seconds=round(seconds, 1),
                instance_id=instance,
                mean_seconds=round(statistics.fmean(v for v, _ in values), 1),
            )
        )
    return sorted(timings, key=lambda t: (-t.seconds, t.step))


class Deployer(Agent[DeployerInput, DeployReport]):
    name: ClassVar[str] = "deployer"
    output = DeployReport
    prompt: ClassVar[str] = """
You are Deployer, HiveMind's release engineer. HiveMind deploys an app onto EC2 instances
over SSH, in steps on every instance at once: upload (copy and unpack the release),
build (virtualenv and the app's build command), configure (environment file and systemd
unit), start (switch the release, restart the service), health check (the app answers on
its port locally), prune (keep three releases); then the load balancer's health check.

You are given each instance's seconds per step and, if the deploy failed, the failed
step's command, exit code, stderr tail and the app's log tail. Report:
- succeeded, and a one-sentence headline;
- the slowest step (the step and instance with the most seconds) and every step's
  slowest and mean time;
- notes that would make the next deploy faster or safer, e.g. a build that dominates
  wants a lockfile or prebuilt wheels; slow start-up work delays every restart; one
  instance much slower than the others;
- for a failure: the step exactly as given, what that step does in plain words, what
  went wrong in plain words, and the lines that show it, copied exactly.
"""

    def describe(self, inputs: DeployerInput) -> str:
        lines = []
        if inputs.spec is not None:
            app = inputs.spec.app
            lines.append(
                f"App: {app.name}, {app.language} {app.runtime_version}, build command "
                f"{app.build_command!r}, start command {app.start_command!r}, port {app.port}, "
                f"health path {app.health_path}"
            )
        for release in inputs.releases:
            steps = ", ".join(f"{k} {v:.1f}s" for k, v in release.seconds.items())
            lines.append(f"{release.instance_id}: release {release.release_id}: {steps}")
        failure = inputs.failure
        if failure is not None:
            lines.append(f"\nFAILED: step {failure.step!r} on {failure.instance_id}")
            lines.append(f"cause: {failure.cause}")
            if failure.command:
                lines.append(f"command: {failure.command}")
            if failure.exit_code is not None:
                lines.append(failure.exit_line)
            lines += [f"stderr: {line}" for line in failure.stderr_tail]
            lines += [f"app log: {line}" for line in failure.app_log_tail]
        return "\n".join(lines) or "No release results."

    def tools(self, inputs: DeployerInput) -> list[Callable[..., str]]:
        def step_times(step: str) -> str:
            """One step's seconds on every instance."""
            values = [
                f"{r.instance_id}: {r.seconds[step]:.1f}s"
                for r in inputs.releases
                if step in r.seconds
            ]
            return "\n".join(values) or f"no instance has a {step!r} step"

        return [step_times]

    def check(self, inputs: DeployerInput, proposal: DeployReport) -> DeployReport:
        """The verdict must follow from the failure; timings must be the data's (the
        slowest step the slowest); a failure explanation must be of the failed step and
        instance, quoting its output; instance ids named must be the deploy's."""
        failure = inputs.failure
        if proposal.succeeded != (failure is None):
            raise Rejected("succeeded disagrees with the deploy's failure")
        timings = {t.step: t for t in step_timings(inputs.releases)}
        per_step = _per_step(inputs.releases)
        named = list(proposal.steps)
        if proposal.slowest_step is not None:
            named.append(proposal.slowest_step)
        for timing in named:
            actual = timings.get(timing.step)
            if actual is None:
                raise Rejected(f"no instance has a {timing.step!r} step")
            on_instance = {i: s for s, i in per_step[timing.step]}.get(timing.instance_id)
            if (
                on_instance is None
                or not _close(actual.seconds, timing.seconds)
                or not _close(on_instance, timing.seconds)
                or not _close(actual.mean_seconds, timing.mean_seconds)
            ):
                raise Rejected(
                    f"{timing.step} took {actual.seconds:.1f}s at most (on "
                    f"{actual.instance_id}), {actual.mean_seconds:.1f}s on average"
                )
        if proposal.slowest_step is not None and timings:
            top = max(timings.values(), key=lambda t: t.seconds)
            if not _close(proposal.slowest_step.seconds, top.seconds):
                raise Rejected(f"the slowest step is {top.step}, not {proposal.slowest_step.step}")
        known_ids = {r.instance_id for r in inputs.releases}
        if failure is not None:
            known_ids.add(failure.instance_id)
        texts = [proposal.headline, *proposal.notes]
        explained = proposal.failure
        if explained is not None:
            if failure is None:
                raise Rejected("the deploy did not fail")
            if explained.step != failure.step or explained.instance_id != failure.instance_id:
                raise Rejected(f"the failed step is {failure.step!r} on {failure.instance_id}")
            text = failure.text()
            for line in explained.evidence:
                if not line.strip() or line not in text:
                    raise Rejected(f"{line!r} is not in the failure's output")
            texts += [explained.what_went_wrong, explained.what_the_step_does]
        elif failure is not None:
            fallback_failure = self.fallback(inputs).failure
            proposal = proposal.model_copy(update={"failure": fallback_failure})
        for text in texts:
            for instance_id in _INSTANCE_ID.findall(text):
                if instance_id not in known_ids:
                    raise Rejected(f"{instance_id} is not one of the deploy's instances")
        return proposal

    def fallback(self, inputs: DeployerInput) -> DeployReport:
        timings = step_timings(inputs.releases)
        slowest = timings[0] if timings else None
        failure = inputs.failure
        explained = _explain_failure(failure, inputs.spec) if failure is not None else None
        return DeployReport(
            succeeded=failure is None,
            headline=_headline(inputs, slowest),
            slowest_step=slowest,
            steps=timings,
            notes=_notes(inputs, timings),
            failure=explained,
        )


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= max(0.5, 0.05 * max(a, b))


def _headline(inputs: DeployerInput, slowest: StepTiming | None) -> str:
    failure = inputs.failure
    if failure is not None:
        where = f" on {failure.instance_id}" if failure.instance_id else ""
        return f"The deploy failed at the {failure.step} step{where}: {failure.cause}"
    if not inputs.releases:
        return "Nothing was deployed: no instance reported a release."
    releases = sorted({r.release_id for r in inputs.releases})
    text = f"Release {', '.join(releases)} runs on {len(inputs.releases)} instance(s)"
    if slowest is not None:
        text += (
            f"; the slowest step was {slowest.step} ({slowest.seconds:.1f}s on "
            f"{slowest.instance_id})"
        )
    return text + "."


def _notes(inputs: DeployerInput, timings: list[StepTiming]) -> list[str]:
    notes = []
    by_step = {t.step: t for t in timings}
    spec = inputs.spec
    build = by_step.get("build")
    if build is not None and build.seconds >= SLOW_BUILD_SECONDS:
        total = max(sum(r.seconds.values()) for r in inputs.releases)
        if total and build.seconds >= total / 2:
            language = spec.app.language if spec else ""
            advice = _BUILD_ADVICE.get(
                language, "lock the dependency versions and cache what the build downloads"
            )
            notes.append(
                f"The build takes {build.seconds:.0f}s of {total:.0f}s on the slowest instance "
                f"and runs on every instance at every deploy: {advice}."
            )
    started = by_step.get("healthy") or by_step.get("health check")
    if started is not None and started.seconds >= SLOW_START_SECONDS:
        notes.append(
            f"The app took {started.seconds:.0f}s to answer on its port after the restart: "
            "work at start-up (migrations, loading data) delays every deploy and restart; do "
            "it in the build, or lazily after the app answers."
        )
    drain = by_step.get("drain")
    if drain is not None and drain.seconds >= SLOW_DRAIN_SECONDS:
        notes.append(
            f"Each instance spent up to {drain.seconds:.0f}s draining (the target group's "
            "deregistration delay) before its release went on: a rolling update pays it once "
            "per instance, a blue-green update (the default) once, when the old colour retires."
        )
    upload = by_step.get("upload")
    if upload is not None and upload.seconds >= SLOW_UPLOAD_SECONDS:
        notes.append(
            f"Uploading the release took {upload.seconds:.0f}s: the archive is large; keep "
            "build output, data and media out of the app's folder (or .gitignore them)."
        )
    for step, values in _per_step(inputs.releases).items():
        if len(values) < 2:
            continue
        (fast, fast_id), (slow, slow_id) = min(values), max(values)
        if slow >= SKEW_FACTOR * max(fast, 0.1) and slow - fast >= SKEW_SECONDS:
            notes.append(
                f"{slow_id} took {slow:.0f}s for {step}, {slow / max(fast, 0.1):.1f}x as long as "
                f"{fast_id} ({fast:.0f}s): look at that instance (CPU credits, disk, network)."
            )
    return notes


def _per_step(releases: tuple[InstanceRelease, ...]) -> dict[str, list[tuple[float, str]]]:
    steps: dict[str, list[tuple[float, str]]] = {}
    for release in releases:
        for step, seconds in release.seconds.items():
            steps.setdefault(step, []).append((seconds, release.instance_id))
    return steps


def _explain_failure(failure: DeployFailure, spec: DeploymentSpec | None) -> FailureExplanation:
    text = failure.text().lower()
    meaning = next(
        (said for words, said in _HINTS if any(word in text for word in words)),
        f"the {failure.step} step's command failed"
        + (f" with {failure.exit_line}" if failure.exit_line else "")
        + "; its last output line is its own explanation",
    )
    if spec is not None and spec.app.port is not None:
        meaning = meaning.replace("$PORT", f"$PORT ({spec.app.port})")
    evidence = list(failure.stderr_tail[-3:]) + list(failure.app_log_tail[-3:])
    if not evidence and failure.cause:
        evidence = [failure.cause]
    return FailureExplanation(
        step=failure.step,
        instance_id=failure.instance_id,
        what_the_step_does=STEPS.get(failure.step, f"the deploy's {failure.step} step"),
        what_went_wrong=f"{meaning[0].upper()}{meaning[1:]}.",
        evidence=[line for line in evidence if line.strip()],
    )
