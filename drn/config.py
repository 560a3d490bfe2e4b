"""Reading params.yaml, the one file that holds every setting of the project."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from drn.errors import UsageError


def load_params(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed settings file; a missing or malformed file is a UsageError naming it."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such settings file") from None
    except yaml.YAMLError as error:
        raise UsageError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(params, dict):
        raise UsageError(f"{path}: expected a mapping of settings at the top level")
    return params


SCHEMA = Path(__file__).parent / "schemas" / "params.schema.yaml"


def validate_params(params: dict[str, Any], source: str | os.PathLike = "params.yaml") -> None:
    """Check params against the JSON schema; the first problem is a UsageError naming its key."""
    import jsonschema

    schema = yaml.safe_load(SCHEMA.read_text())
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(params)
    )
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise UsageError(f"{source}: {where}: {error.message}")


def setting(params: dict[str, Any], dotted: str, source: str | os.PathLike = "params.yaml") -> Any:
    """``params["a"]["b"]`` for ``"a.b"``; a missing key is a UsageError naming it."""
    value: Any = params
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            raise UsageError(f"{source}: missing setting {dotted}")
        value = value[key]
    return value


def apply_overrides(params: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """A copy of ``params`` with ``key.path=value`` items applied (values parsed as YAML)."""
    import copy

    result = copy.deepcopy(params)
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item}: expected KEY=VALUE, e.g. train.optimizer.lr=5e-4")
        *parents, leaf = key.strip().split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UsageError(f"--set {item}: {part} is not a group of settings")
        node[leaf] = _scalar(text)
    return result


def _scalar(text: str) -> Any:
    """YAML value of ``text``; also a number where YAML 1.1 sees a string (``5e-4``)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value
