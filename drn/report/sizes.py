"""Model sizes: our models' trainable parameters as params.yaml sizes them, Fig. 2's points
(published methods with sourced counts beside the plan's models at Set5 x4), and a control's
count against its published one.

Owns: ``model_parameters`` (built on the meta device: no memory, no time; torch imported inside
it), ``size_rows`` (Fig. 2's table and figure), ``ParameterCheck`` (ours rounds to the published
figure at its printed precision).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from drn.pipeline.plan import MAIN_GROUP, Plan
from drn.report.reference import parse_cell, title
from drn.report.results import cell_evaluations, seeds
from drn.report.stats import NOT_PLANNED, NOT_RUN


def model_parameters(name: str, scale: int, params: dict[str, Any]) -> int:
    """Trainable parameters of ``name`` at ``scale`` as params.yaml sizes it (built on the meta
    device: no memory, no time)."""
    import torch

    from drn.models.complexity import trainable_parameters
    from drn.pipeline.params import build_from_params

    with torch.device("meta"):
        return trainable_parameters(build_from_params(params, name, scale))


def size_rows(reference: dict[str, Any], plan: Plan, params: dict[str, Any]) -> list[dict]:
    """Fig. 2's points: published methods with sourced parameter counts, and the plan's models
    (its Table 3 columns that are a model, not bicubic or a self-ensemble) at Set5 x4."""
    rows = []
    values = reference["table3"]["values"]
    for entry in sorted(reference["parameters"], key=lambda e: e["count"]):
        method = entry["method"]
        psnr = parse_cell(values[method]["Set5"][4])[0] if method in values else None
        rows.append({
            "name": method, "parameters": float(entry["count"]),
            "parameters_text": entry["printed"], "psnr": psnr, "ours": False,
            "psnr_missing": "not in the paper's Table 3", "source": entry["source"],
        })  # fmt: skip
    for variant in _main_variants(plan):
        evaluations = cell_evaluations(plan, MAIN_GROUP, variant, 4, "Set5")
        ours = seeds(evaluations)
        count = model_parameters(variant, 4, params)
        rows.append({
            "name": f"{title(variant)} (ours)", "parameters": float(count),
            "parameters_text": f"{count:,}", "psnr": ours.mean[0] if ours else None,
            "psnr_missing": NOT_RUN if evaluations else NOT_PLANNED,
            "source": "counted from the model built with params.yaml's sizes", "ours": True,
        })  # fmt: skip
    return rows


def _main_variants(plan: Plan) -> list[str]:
    """The model variants of the plan's main runs, in its order."""
    return list(dict.fromkeys(run.variant for run in plan.runs if "main" in run.roles))


@dataclass(frozen=True)
class ParameterCheck:
    """Our control's trainable parameters at a scale against the published count."""

    scale: int
    ours: int
    printed: str | None  # as published, e.g. 1.37M; None: not published

    @property
    def matches(self) -> bool | None:
        """Ours rounds to the published figure at its printed precision (1,369,859 -> 1.37M);
        None: none published."""
        found = re.fullmatch(r"([\d.]+)\s*([KM]?)", (self.printed or "").replace(",", ""))
        if found is None:
            return None
        number, unit = found.groups()
        decimals = len(number.split(".")[1]) if "." in number else 0
        scale = {"M": 1e6, "K": 1e3, "": 1}[unit]
        return round(self.ours / scale, decimals) == round(float(number), decimals)
