"""The model registry: variants registered by name, built from config with validated overrides.

A family module (one file per architecture family, as timm does) defines a frozen dataclass of
sizes and a module class, and registers each variant with :func:`register_variant` as a name plus
its default sizes. :func:`build_model` then builds any variant at any scale, with any size
overridden (from params.yaml's ``models.<variant>`` or the command line); a wrong name, unknown
size or invalid value is a :class:`~drn.core.errors.UsageError` that lists the choices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from drn.core.errors import UsageError


@dataclass(frozen=True)
class Variant:
    """A registered model: how to build it and the sizes it has unless overridden."""

    name: str
    config: Any  # a frozen dataclass instance with a ``validate()`` method
    build: Callable[[Any, int], nn.Module]
    description: str


_VARIANTS: dict[str, Variant] = {}


def register_variant(
    name: str, config: Any, build: Callable[[Any, int], nn.Module], description: str
) -> None:
    if name in _VARIANTS:
        raise ValueError(f"model variant {name!r} is registered twice")
    config.validate()
    _VARIANTS[name] = Variant(name, config, build, description)


def variants() -> dict[str, Variant]:
    """Every registered variant, by name."""
    return dict(_VARIANTS)


def get_variant(name: str) -> Variant:
    if name not in _VARIANTS:
        raise UsageError(f"unknown model {name!r}; choose from {', '.join(sorted(_VARIANTS))}")
    return _VARIANTS[name]


def resolve_config(name: str, **overrides: Any) -> Any:
    """The variant's sizes with ``overrides`` applied and checked."""
    variant = get_variant(name)
    fields = {f.name for f in dataclasses.fields(variant.config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UsageError(
            f"model {name}: unknown setting {', '.join(unknown)}; "
            f"choose from {', '.join(sorted(fields))}"
        )
    config = dataclasses.replace(variant.config, **overrides)
    try:
        config.validate()
    except ValueError as error:
        raise UsageError(f"model {name}: {error}") from None
    return config


def build_model(name: str, scale: int, **overrides: Any) -> nn.Module:
    """Build variant ``name`` for integer ``scale`` >= 2, with any of its sizes overridden."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
        raise UsageError(f"model {name}: scale must be an integer >= 2, got {scale!r}")
    config = resolve_config(name, **overrides)
    model = get_variant(name).build(config, scale)
    model.variant = name  # checkpoints record it, so the model can be rebuilt by name
    return model
