"""Reading params.yaml, the one file that holds every setting of the project."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from drn.core.errors import UsageError

if TYPE_CHECKING:
    from torch import nn


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


SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "params.schema.yaml"


def validate_params(params: dict[str, Any], source: str | os.PathLike = "params.yaml") -> None:
    """Check params against the JSON schema and its cross-references (a source's name, a
    model's variant...); the first problem is a UsageError naming its key."""
    import jsonschema

    schema = yaml.safe_load(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(params))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise UsageError(f"{source}: {where}: {error.message}")
    for key, problem in _broken_references(params):
        raise UsageError(f"{source}: {key}: {problem}")


def _broken_references(params: dict[str, Any]) -> Iterator[tuple[str, str]]:
    from drn.engine.releases import releases
    from drn.models import resolve_config, variants

    sources = params["sources"]
    downscaled = params["downscaled"] or {}
    for name in sorted(set(sources) & set(downscaled)):
        yield f"downscaled.{name}", "also a key of sources: names must be unique"
    known = set(sources) | set(downscaled)
    for name, spec in downscaled.items():
        if spec["of"] not in known:
            yield f"downscaled.{name}.of", f"unknown source {spec['of']!r}"
    ablations, train = params.get("ablations") or {}, params["train"]
    wanted_sources = {
        "evaluation.datasets": params["evaluation"]["datasets"],
        "train.data.hr": [train["data"]["hr"]],
        **{f"ablations.{name}.dataset": [spec["dataset"]] for name, spec in ablations.items()},
    }
    if train["validation"]["source"]:
        wanted_sources["train.validation.source"] = [train["validation"]["source"]]
    if train["data"]["lr_prefix"]:
        scales = {*params["evaluation"]["scales"], *(a["scale"] for a in ablations.values())}
        prefix = train["data"]["lr_prefix"]
        wanted_sources["train.data.lr_prefix"] = [f"{prefix}{s}" for s in sorted(scales)]
    for key, names in wanted_sources.items():
        for name in names:
            if name not in known:
                yield key, f"unknown source {name!r}; sources has {', '.join(sorted(known))}"
    models = sorted(variants())
    wanted_models = {
        "evaluation.models": params["evaluation"]["models"],
        "evaluation.ensemble_models": params["evaluation"]["ensemble_models"],
        **{f"ablations.{name}.models": spec["models"]
           for name, spec in ablations.items() if "models" in spec},
        **{f"ablations.{name}.model": [spec["model"]]
           for name, spec in ablations.items() if "model" in spec},
    }  # fmt: skip
    for key, names in wanted_models.items():
        for name in names:
            if name not in models:
                yield key, f"unknown model {name!r}; choose from {', '.join(models)}"
            elif name not in train["epochs"] and key.startswith("evaluation."):
                yield "train.epochs", f"no entry for model {name}"
    for name in params.get("controls") or []:
        if name not in models:
            yield "controls", f"unknown model {name!r}; choose from {', '.join(models)}"
        elif name in params["evaluation"]["models"]:
            yield "controls", f"{name} is also one of evaluation.models: a control is apart"
        elif name not in train["epochs"]:
            yield "train.epochs", f"no entry for model {name} (a control)"
    for name, files in (params.get("controls_released") or {}).items():
        if name not in models:
            yield "controls_released", f"unknown model {name!r}; choose from {', '.join(models)}"
            continue
        recorded = releases(name)
        if not recorded:
            yield "controls_released", f"drn/reference has no released weights of {name}"
            continue
        for key in files:
            if int(key[1:]) not in recorded:
                known = ", ".join(f"x{s}" for s in recorded)
                yield f"controls_released.{name}.{key}", f"no release of {name} at {key}: {known}"
    seeds = train["seeds"]
    for name in sorted(set(seeds) - {"default"} if isinstance(seeds, dict) else []):
        if name not in models:
            yield f"train.seeds.{name}", f"unknown model {name!r}; choose from {', '.join(models)}"
    for name, sizes in (params.get("models") or {}).items():
        try:
            resolve_config(name, **(sizes or {}))
        except UsageError as error:
            yield f"models.{name}", str(error)
    for name in params["evaluation"]["ensemble_models"]:
        if name not in params["evaluation"]["models"]:
            yield "evaluation.ensemble_models", f"{name} is not one of evaluation.models"
    lead, runtime = (params["resources"]["train"][k] for k in ("stop_before_limit", "runtime"))
    if lead >= 60 * runtime:
        problem = f"{lead} s leaves no time to train in a time limit (runtime) of {runtime} min"
        yield "resources.train.stop_before_limit", problem


def model_sizes(params: dict[str, Any], name: str) -> dict[str, Any]:
    """The sizes params.yaml overrides for model variant ``name`` (``models.<name>``; {}: none)."""
    return dict((params.get("models") or {}).get(name) or {})


def build_from_params(params: dict[str, Any], name: str, scale: int) -> nn.Module:
    """Build ``name`` with the sizes params.yaml overrides under ``models.<name>`` (if any)."""
    from drn.models import build_model

    return build_model(name, scale, **model_sizes(params, name))


def source_path(params: dict[str, Any], name: str) -> Path:
    """Where source ``name`` lives: {paths.data}/{name}."""
    known = set(params["sources"]) | set(params.get("downscaled") or {})
    if name not in known:
        choices = ", ".join(sorted(known))
        raise UsageError(f"params.yaml: unknown source {name!r}; sources has {choices}")
    return Path(params["paths"]["data"]) / name


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
