"""Super-resolution models: a registry of variants (``build_model``) and their families."""

from drn.models import drn as _drn  # noqa: F401  (registers the DRN variants)
from drn.models import edsr as _edsr  # noqa: F401  (registers edsr_baseline, the control)
from drn.models.registry import (
    build_from_params,
    build_model,
    get_variant,
    resolve_config,
    variants,
)

__all__ = ["build_from_params", "build_model", "get_variant", "resolve_config", "variants"]
