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


def setting(params: dict[str, Any], dotted: str, source: str | os.PathLike = "params.yaml") -> Any:
    """``params["a"]["b"]`` for ``"a.b"``; a missing key is a UsageError naming it."""
    value: Any = params
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            raise UsageError(f"{source}: missing setting {dotted}")
        value = value[key]
    return value
