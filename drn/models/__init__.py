"""Super-resolution models: a registry of variants built by name (``build_model``), and their
families, one file each (head, body, tail), as timm and EDSR-PyTorch keep them.

Owns: :mod:`~drn.models.registry` (variants, their sizes, validated overrides),
:mod:`~drn.models.drn` (DRN and DRN+, the paper's), :mod:`~drn.models.edsr` (EDSR's baseline, the
control), :mod:`~drn.models.complexity` (parameters and FLOPs).

May import: :mod:`drn.core`, torch. Nothing here reads params.yaml: the pipeline hands the sizes
over (:func:`drn.pipeline.params.build_from_params`).
"""

from drn.models import drn as _drn  # noqa: F401  (registers the DRN variants)
from drn.models import edsr as _edsr  # noqa: F401  (registers edsr_baseline, the control)
from drn.models.registry import build_model, get_variant, resolve_config, variants

__all__ = ["build_model", "get_variant", "resolve_config", "variants"]
