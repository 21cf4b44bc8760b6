"""Rendering the text files in templates/ (user data, service units, reports)."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("hivemind_templates", ""),
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, never an empty string
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # shell scripts and config files, not HTML
    )


def render(template: str, **values: Any) -> str:
    return _environment().get_template(template).render(**values)
