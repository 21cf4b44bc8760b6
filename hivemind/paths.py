"""Where HiveMind keeps things on the operator's machine."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The deployment records' root: `HIVEMIND_HOME`, else ~/.hivemind."""
    return Path(os.environ.get("HIVEMIND_HOME") or Path.home() / ".hivemind")


def cache_dir() -> Path:
    """Re-creatable downloads (git clones, the CDK CLI): `HIVEMIND_CACHE_DIR`, else the
    per-user cache folder."""
    explicit = os.environ.get("HIVEMIND_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "hivemind"
