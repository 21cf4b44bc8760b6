"""Java apps: Spring Boot built with Maven or Gradle."""

from __future__ import annotations

import re

import yaml

from hivemind.recon.common import database_from_url
from hivemind.recon.files import AppFiles
from hivemind.recon.findings import Findings, normalize_version
from hivemind.recon.model import Evidence

LANGUAGE = "java"
MANIFESTS = ("pom.xml", "build.gradle", "build.gradle.kts")
DEFAULT_PORT = 8080
DRIVERS = (
    ("org.postgresql", "postgres"),
    ("mysql-connector", "mysql"),
    ("mariadb-java-client", "mysql"),
    ("spring-boot-starter-data-mongodb", "mongodb"),
    ("sqlite-jdbc", "sqlite"),
)
_MAVEN_JAVA = re.compile(
    r"<(?:java\.version|maven\.compiler\.release|maven\.compiler\.source|release)>\s*"
    r"([\d.]+)\s*<"
)
_GRADLE_JAVA = re.compile(
    r"JavaLanguageVersion\.of\(\s*(\d+)\s*\)|(?:source|target)Compatibility\s*=\s*"
    r"(?:JavaVersion\.VERSION_)?['\"]?([\d._]+)"
)
_ARTIFACT = re.compile(r"<artifactId>([^<]+)</artifactId>")
_VERSION = re.compile(r"<version>([^<]+)</version>")
_CONFIG_FILES = (
    "src/main/resources/application.properties",
    "src/main/resources/application.yml",
    "src/main/resources/application.yaml",
)


def _build_file(files: AppFiles) -> str | None:
    return files.first(*MANIFESTS)


def framework(files: AppFiles) -> tuple[str, Evidence] | None:
    build = _build_file(files)
    if build is None:
        return None
    needle = "spring-boot" if build == "pom.xml" else "org.springframework.boot"
    line = files.find_line(build, needle)
    return ("spring-boot", files.evidence(build, line)) if line else None


def _java_version(raw: str) -> str | None:
    version = normalize_version(raw.replace("_", "."))
    if version and version.startswith("1.") and len(version.split(".")) >= 2:
        version = version.split(".")[1]  # the old "1.8" naming of Java 8
    return version


def detect(files: AppFiles, findings: Findings) -> None:
    build = _build_file(files)
    assert build is not None
    found = framework(files)
    if found:
        findings.add("framework", found[0], "manifest", found[1])
    text = files.read(build) or ""

    pattern = _MAVEN_JAVA if build == "pom.xml" else _GRADLE_JAVA
    for number, match in files.scan(build, pattern):
        raw = next(g for g in match.groups() if g)
        findings.add(
            "runtime_version", _java_version(raw), "manifest", files.evidence(build, number)
        )
        break

    _config(files, findings)
    findings.add("port", DEFAULT_PORT, "default", note="Spring Boot's default port")
    if files.find_line(build, "spring-boot-starter-actuator"):
        findings.add(
            "health_path",
            "/actuator/health",
            "config",
            files.evidence(build, files.find_line(build, "spring-boot-starter-actuator")),
            "Spring Boot Actuator's health endpoint",
        )
    for needle, engine in DRIVERS:
        line = files.find_line(build, needle)
        if line:
            findings.add(
                "database_engine",
                engine,
                "driver",
                files.evidence(build, line),
                f"depends on {needle}",
            )

    jar: str
    if build == "pom.xml":
        wrapper = "./mvnw" if files.exists("mvnw") else "mvn"
        findings.add(
            "build_command", f"{wrapper} -B -q -DskipTests package", "stack", files.evidence(build)
        )
        artifact, version = _pom_coordinates(text)
        if artifact and version and "$" not in artifact + version:
            findings.add("name", artifact, "manifest", files.evidence(build))
            jar = f"target/{artifact}-{version}.jar"
        else:
            jar = "$(ls target/*.jar | grep -v -- '-plain.jar' | head -n 1)"
    else:
        wrapper = "./gradlew" if files.exists("gradlew") else "gradle"
        findings.add(
            "build_command",
            f"{wrapper} --no-daemon -q bootJar -x test",
            "stack",
            files.evidence(build),
        )
        jar = "$(ls build/libs/*.jar | grep -v -- '-plain.jar' | head -n 1)"
    findings.add(
        "start_command",
        f"java -Dserver.port=$PORT -jar {jar}",
        "stack",
        files.evidence(build),
        "the Spring Boot jar",
    )


def _pom_coordinates(pom: str) -> tuple[str | None, str | None]:
    """The project's own artifactId and version (not the parent's)."""
    body = re.sub(r"<parent>.*?</parent>", "", pom, flags=re.S)
    body = re.sub(
        r"<(dependencies|build|dependencyManagement|profiles)>.*?</\1>", "", body, flags=re.S
    )
    artifact = _ARTIFACT.search(body)
    version = _VERSION.search(body)
    return (
        artifact.group(1).strip() if artifact else None,
        version.group(1).strip() if version else None,
    )


def _config(files: AppFiles, findings: Findings) -> None:
    for rel in _CONFIG_FILES:
        text = files.read(rel)
        if text is None:
            continue
        if rel.endswith(".properties"):
            for number, line in enumerate(text.splitlines(), start=1):
                key, _, value = line.partition("=")
                _setting(files, findings, rel, number, key.strip(), value.strip())
        else:
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError:
                continue
            for dotted, setting in _flatten(data):
                line_no = files.find_line(rel, dotted.rsplit(".", 1)[-1] + ":")
                _setting(files, findings, rel, line_no, dotted, str(setting))


def _setting(
    files: AppFiles, findings: Findings, rel: str, line: int | None, key: str, value: str
) -> None:
    evidence = files.evidence(rel, line)
    if key == "server.port":
        port = re.search(r"(\d{2,5})\}?$", value)
        if port:
            findings.add("port", int(port.group(1)), "config", evidence)
    elif key == "spring.datasource.url":
        findings.add(
            "database_engine", database_from_url(value), "config", evidence, "spring.datasource.url"
        )


def _flatten(data: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(data, dict):
        out: list[tuple[str, object]] = []
        for key, value in data.items():
            out.extend(_flatten(value, f"{prefix}{key}."))
        return out
    return [(prefix.rstrip("."), data)] if prefix else []
