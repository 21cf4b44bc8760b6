"""Amazon Linux 2023's runtime packages: the dnf package names HiveMind installs, as data.

As of AL2023 release 2023.12.20260930 (read 2026-12-07). Sources, from AWS:

* Node.js: the AL2023 User Guide's "Node.js in AL2023" (docs.aws.amazon.com/linux/al2023/
  ug/nodejs.html): versions 20, 22 and 24, namespaced `nodejs{MAJOR}` and
  `nodejs{MAJOR}-npm` (24 since 2023.9.20251110); Node.js 18 was never namespaced
  (`nodejs`, `nodejs-npm`, the guide's earlier text) and its security support ended
  on 2025-04-30 (AL2023 package support statements).
* Python: "Python in AL2023" (ug/python.html): the system Python 3.9 is `python3` (with
  `python3-pip`, `python3-devel`) for the life of AL2023, and /usr/bin/python3.9 exists;
  3.11, 3.12, 3.13 and 3.14 (3.14 since 2023.10.20260302) are `python3.1X`,
  `python3.1X-pip`, `python3.1X-devel`.
* Java: Amazon Corretto 8 is `java-1.8.0-amazon-corretto` and `-devel`, with no headless
  package; 11, 17, 21 and 25 are `java-NN-amazon-corretto-headless` and `-devel`
  (Corretto 25 in 2023.12.20260803's release notes; amazonlinux/amazon-linux-2023's
  support_info.xml; corretto/corretto-docker's al2023 Dockerfiles). `maven` is one package.
* Ruby: "Ruby in AL2023" (ug/ruby.html) and the release notes: `ruby3.2` (with `-devel`
  and `-rubygem-bundler`), `ruby3.4` (2023.10.20260302) and `ruby4.0` (2023.11.20260514);
  there is no Ruby 3.3 ("There is no plan to add Ruby 3.3", amazon-linux-2023 issue #776).
* Go: one `golang` package (1.26 in 2023.12.20260914).

Not confirmed from an AWS listing, taken from the naming pattern the confirmed versions
follow: `nodejs24-npm`, `python3.12-devel`, `python3.13-devel`, `python3.14-devel`,
`ruby3.4-devel`, `ruby3.4-rubygem-bundler`, `ruby4.0-devel`, `ruby4.0-rubygem-bundler`.

The sandbox's hosts refuse a `dnf install` of any package not named here (see
`hivemind.sandbox.user_data`), as an instance's dnf does ("No match for argument").
"""

from __future__ import annotations

RELEASE = "2023.12.20260930"

# Per language: version -> the packages that provide it (runtime first), oldest first.
RUNTIMES: dict[str, dict[str, tuple[str, ...]]] = {
    "node": {
        "18": ("nodejs", "nodejs-npm"),
        "20": ("nodejs20", "nodejs20-npm"),
        "22": ("nodejs22", "nodejs22-npm"),
        "24": ("nodejs24", "nodejs24-npm"),
    },
    "python": {
        "3.9": ("python3", "python3-pip", "python3-devel"),
        "3.11": ("python3.11", "python3.11-pip", "python3.11-devel"),
        "3.12": ("python3.12", "python3.12-pip", "python3.12-devel"),
        "3.13": ("python3.13", "python3.13-pip", "python3.13-devel"),
        "3.14": ("python3.14", "python3.14-pip", "python3.14-devel"),
    },
    "java": {
        "8": ("java-1.8.0-amazon-corretto", "java-1.8.0-amazon-corretto-devel"),
        "11": ("java-11-amazon-corretto-headless", "java-11-amazon-corretto-devel"),
        "17": ("java-17-amazon-corretto-headless", "java-17-amazon-corretto-devel"),
        "21": ("java-21-amazon-corretto-headless", "java-21-amazon-corretto-devel"),
        "25": ("java-25-amazon-corretto-headless", "java-25-amazon-corretto-devel"),
    },
    "ruby": {
        "3.2": ("ruby3.2", "ruby3.2-devel", "ruby3.2-rubygem-bundler"),
        "3.4": ("ruby3.4", "ruby3.4-devel", "ruby3.4-rubygem-bundler"),
        "4.0": ("ruby4.0", "ruby4.0-devel", "ruby4.0-rubygem-bundler"),
    },
}
# Versions whose security support on AL2023 has ended: still installable, with a note.
END_OF_SUPPORT = {("node", "18"): "2025-04-30"}
# Everything else HiveMind's user data installs.
OTHER = (
    "golang",
    "maven",
    "git",
    "tar",
    "gcc",
    "make",
    "amazon-cloudwatch-agent",
)

PACKAGES: frozenset[str] = frozenset(
    {name for versions in RUNTIMES.values() for names in versions.values() for name in names}
    | set(OTHER)
)
