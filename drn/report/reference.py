"""The published numbers the report puts ours beside, as drn/reference holds them.

Owns: the paper's numbers (drn/reference/drn_paper.yaml: Table 3, the ablation tables, the
training recipe, the claims), the datasets and scales of its Table 3, which of the paper's
columns and ablation rows our arms redo (``ARMS``, ``PAPER_ARMS``), and a control's published
numbers (drn/reference/{control}.yaml: the cells, their notes, cross-checks and known protocol
offsets, the primary source). Read only; nothing here looks at our results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
PAPER = REFERENCE / "drn_paper.yaml"
PAPER_DATASETS = ("Set5", "Set14", "B100", "Urban100", "Manga109")
SCALES = (2, 3, 4)
# Table 3's columns are the plan's arms of group table3; each known arm -> (its title, the paper's
# column it is put beside). An arm not here (a model variant added to evaluation.models) is titled
# by its name, with no paper column beside it.
ARMS = {
    "bicubic": ("Bicubic", "Bicubic"),
    "drn": ("DRN", "DRN"),
    "drn-ensemble": ("DRN (self-ensemble)", "DRN"),
    "drn_plus": ("DRN+", "DRN+"),
    "drn_plus-ensemble": ("DRN+ (self-ensemble)", "DRN+"),
}
# The rows of the paper's ablation tables (an ablation's `paper`) that our model variants redo.
# Table 2 prints "DBN+", read as DRN+ (drn_paper.yaml's note).
PAPER_ARMS = {"table2": {"drn": "RDBs", "drn_no_rd": "No RDBs", "drn_plus": "DBN+"}}


def paper() -> dict[str, Any]:
    return yaml.safe_load(PAPER.read_text())


def parse_cell(printed: str) -> tuple[float, float]:
    """'38.06/0.9607' (or the paper's '33.32/0,9159') -> (38.06, 0.9607)."""
    psnr, ssim = printed.replace(",", ".").split("/")
    return float(psnr), float(ssim)


def title(arm: str) -> str:
    return ARMS.get(arm, (arm, None))[0]


def control_reference(variant: str) -> dict[str, Any]:
    """The published numbers of control ``variant``: drn/reference/{variant}.yaml ({} if none)."""
    path = REFERENCE / f"{variant}.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def published_cell(published: dict[str, Any], dataset: str,
                   scale: int) -> tuple[float, float] | None:  # fmt: skip
    """The published (PSNR, SSIM) of ``dataset`` at ``scale`` (benchmarks.values), None: none."""
    values = (published.get("benchmarks") or {}).get("values") or {}
    printed = (values.get(dataset) or {}).get(scale)
    return None if printed is None else parse_cell(printed)


def published_notes(published: dict[str, Any], dataset: str, scale: int) -> list[str]:
    """What the reference says of one published cell: another source, or how it is printed."""
    benchmarks = published.get("benchmarks") or {}
    notes = []
    for entry in benchmarks.get("from_other_sources") or []:
        if tuple(entry["cell"]) == (dataset, scale):
            notes.append(f"from {entry['source']}: {entry['note']}")
    for entry in benchmarks.get("notes") or []:
        if tuple(entry["cell"]) == (dataset, scale):
            notes.append(f'printed "{entry["printed"]}": {entry["note"]}')
    return notes


def protocol_offset(published: dict[str, Any], dataset: str,
                    scale: int) -> tuple[float, str] | None:  # fmt: skip
    """The known protocol offset of one published cell (benchmarks.protocol_offsets): (its PSNR
    minus what our protocol gives for the same SR images, in dB; why, in one line), None: none."""
    for entry in (published.get("benchmarks") or {}).get("protocol_offsets") or []:
        if (dataset, scale) in {tuple(cell) for cell in entry["cells"]}:
            return float(entry["psnr_db"]), " ".join(str(entry["why"]).split())
    return None


def cross_checks(published: dict[str, Any], dataset: str, scale: int) -> list[str]:
    """The same cell as the reference's other sources print it: 'PSNR/SSIM (source)'."""
    checks = ((published.get("benchmarks") or {}).get("cross_checks")) or {}
    return [
        f"{values[dataset][scale]} ({source})"
        for source, values in checks.items()
        if scale in (values.get(dataset) or {})
    ]


def published_source(published: dict[str, Any]) -> dict[str, Any]:
    """The primary source of a control's published numbers (cite, what, protocol, caveats)."""
    primary = (published.get("benchmarks") or {}).get("primary")
    return ((published.get("sources") or {}).get(primary) or {}) if primary else {}
