"""`hivemind.yaml`: the user's overrides, each value remembered with its line.

The file mirrors the spec's shape (``app.port``, ``database.engine``, ``tags``);
the allowed keys are read from `DeploymentSpec` itself so the two never drift.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel

from hivemind.errors import BadInputError
from hivemind.spec import DeploymentSpec

CONFIG_FILE = "hivemind.yaml"
# hivemind.yaml comes from an untrusted repository: a settings file is a few hundred
# bytes, and what its aliases expand to is bounded (a 363-byte "billion laughs" file
# otherwise expands to hundreds of megabytes when printed).
MAX_CONFIG_BYTES = 64 * 1024
MAX_EXPANDED_NODES = 10_000
_NOT_USER_SETTABLE = ("schema_version", "notes", "provenance")
# Mappings whose keys are the user's own (tag names), not spec fields.
_FREE_MAPPINGS = ("tags",)


def allowed_keys() -> dict[str, tuple[str, ...] | None]:
    """Top-level keys; each maps to its child keys, or None for a leaf or free mapping."""
    keys: dict[str, tuple[str, ...] | None] = {}
    for name, info in DeploymentSpec.model_fields.items():
        if name in _NOT_USER_SETTABLE:
            continue
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys[name] = tuple(sub.model_fields)
        else:
            keys[name] = None
    return keys


@dataclass(frozen=True)
class UserConfig:
    """Values set in hivemind.yaml, by dotted spec path, with the line each was set on."""

    path: Path | None = None
    values: dict[str, object] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)

    def evidence(self, key: str) -> str:
        return f"{CONFIG_FILE}:{self.lines[key]}" if key in self.lines else CONFIG_FILE


def load_user_config(repo_root: Path) -> UserConfig:
    """Read `hivemind.yaml` from the repository root; an absent file is an empty config.
    BadInputError for one that is not a regular file inside the repository (a folder, a
    symbolic link leading out of it) or is larger than a settings file can be."""
    path = repo_root / CONFIG_FILE
    if not path.exists() and not path.is_symlink():
        return UserConfig()
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(repo_root.resolve()):
            raise BadInputError(
                f"{CONFIG_FILE} is a symbolic link out of the repository (to {target})",
                next_step=f"make {CONFIG_FILE} a file in the repository",
            )
    if not path.is_file():
        raise BadInputError(
            f"{CONFIG_FILE} in {repo_root} is not a file",
            next_step=f"make {CONFIG_FILE} a YAML file of settings (`hivemind spec schema`)",
        )
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise BadInputError(
            f"{CONFIG_FILE} is {size:,} bytes; a settings file is at most {MAX_CONFIG_BYTES:,}",
            next_step=f"keep only HiveMind's settings in {CONFIG_FILE}",
        )
    return parse_user_config(path.read_text(encoding="utf-8", errors="replace"), path)


def _expanded_nodes(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes `node` stands for once every alias is expanded (an alias is the
    node it names, so the count is computed once per node)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = 1  # a recursive alias counts once: construction refuses it anyway
    total = 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            total += _expanded_nodes(key, memo) + _expanded_nodes(value, memo)
    elif isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_nodes(item, memo) for item in node.value)
    memo[id(node)] = total
    return total


def parse_user_config(text: str, path: Path | None = None) -> UserConfig:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return UserConfig(path=path)
        if not isinstance(root, yaml.MappingNode):
            raise _error("must be a mapping of settings (key: value)", root)
        if _expanded_nodes(root, {}) > MAX_EXPANDED_NODES:
            raise _error(
                f"its aliases expand to more than {MAX_EXPANDED_NODES:,} values; "
                "write the settings out instead",
                root,
            )
        values: dict[str, object] = {}
        lines: dict[str, int] = {}
        schema = allowed_keys()
        for key_node, value_node in root.value:
            key = str(key_node.value)
            if key not in schema:
                raise _unknown_key(key, key_node, list(schema), schema)
            children = schema[key]
            if children is None:
                values[key] = _leaf(loader, key, value_node)
                lines[key] = _line(key_node)
                continue
            if not isinstance(value_node, yaml.MappingNode):
                raise _error(
                    f"'{key}' must be a mapping with keys: {', '.join(children)}", value_node
                )
            for child_key_node, child_value_node in value_node.value:
                child = str(child_key_node.value)
                if child not in children:
                    raise _unknown_key(f"{key}.{child}", child_key_node, list(children), schema)
                dotted = f"{key}.{child}"
                values[dotted] = loader.construct_object(child_value_node, deep=True)
                lines[dotted] = _line(child_key_node)
        return UserConfig(path=path, values=values, lines=lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{CONFIG_FILE}:{mark.line + 1}:{mark.column + 1}" if mark else CONFIG_FILE
        problem = " ".join(filter(None, [exc.context, exc.problem]))
        raise BadInputError(
            f"{CONFIG_FILE} is not valid YAML",
            where=where,
            cause=problem or str(exc),
            next_step=f"fix {CONFIG_FILE} at the line and column shown, then run the command again",
        ) from None
    except yaml.YAMLError as exc:
        raise BadInputError(f"{CONFIG_FILE} is not valid YAML", cause=str(exc)) from None
    finally:
        loader.dispose()


def _leaf(loader: yaml.SafeLoader, key: str, node: yaml.Node) -> object:
    value = loader.construct_object(node, deep=True)
    if key in _FREE_MAPPINGS:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _error(f"'{key}' must be a mapping of name: value", node)
        return {str(k): str(v) for k, v in value.items()}
    return value


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _error(message: str, node: yaml.Node) -> BadInputError:
    return BadInputError(
        f"{CONFIG_FILE}: {message}",
        where=f"{CONFIG_FILE}:{_line(node)}",
        next_step=f"fix {CONFIG_FILE}; `hivemind spec schema` lists every setting",
    )


def _unknown_key(
    key: str,
    node: yaml.Node,
    siblings: list[str],
    schema: dict[str, tuple[str, ...] | None],
) -> BadInputError:
    leaf = key.rsplit(".", 1)[-1]
    guesses = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
    if not guesses:
        # A right key in the wrong section: `port:` at the top instead of under `app:`.
        elsewhere = [
            f"{section}.{child}"
            for section, children in schema.items()
            for child in children or ()
            if child == leaf
        ]
        guesses = elsewhere[:1]
    hint = f"did you mean '{guesses[0]}'?" if guesses else f"allowed here: {', '.join(siblings)}"
    return BadInputError(
        f"unknown setting '{key}' in {CONFIG_FILE}",
        where=f"{CONFIG_FILE}:{_line(node)}",
        cause=hint,
        next_step=f"fix {CONFIG_FILE}; `hivemind spec schema` lists every setting",
    )
