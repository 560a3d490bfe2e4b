"""How much a section's runs trained against the recipe they are compared with: the
"demo-scale run (N iterations; the paper: M)" label.

Owns: which of the paper's recipes (drn_paper.yaml ``training.epochs``) a model variant is
compared with (``PAPER_RECIPE``, ``paper_epochs``), and the label of a section whose runs train
fewer samples (iterations x batch) than ``DEMO_FRACTION`` of that recipe's (``demo_scale``).
"""

from __future__ import annotations

from typing import Any

from drn.pipeline.plan import Run as PlannedRun

# The paper's recipe (drn_paper.yaml training.epochs) each model variant is compared with.
PAPER_RECIPE = {"drn": "DRN", "drn_plus": "DRN+", "drn_no_rd": "DRN"}
DEMO_FRACTION = 0.1  # a run of fewer samples (iterations x batch) than this of the paper's


def paper_epochs(reference: dict[str, Any], variant: str) -> tuple[float, str]:
    """The epochs of the paper's recipe that a run of ``variant`` is compared with, and whose
    they are: the paper's for its models (PAPER_RECIPE), else (a control: the same recipe as
    DRN's) the paper's DRN's."""
    epochs = (reference.get("training") or {}).get("epochs") or {}
    column = PAPER_RECIPE.get(variant, "DRN")
    return float(epochs.get(column, 800)), column


def demo_scale(entries: list[tuple[str, PlannedRun, float]], params: dict[str, Any],
               reference: dict[str, Any], recipe: dict[str, Any] | None = None,
               whose: str = "the paper") -> str:  # fmt: skip
    """'demo-scale run (N iterations; the paper: M)' when the runs of a section, (title, run,
    the paper's epochs for it), train fewer than DEMO_FRACTION of the paper's samples (iterations
    x batch); '' when none does. ``recipe`` (iterations_per_epoch, batch): another than the
    paper's, e.g. a control's published one, and ``whose`` it is."""
    training = recipe or reference.get("training") or {}
    paper_per_epoch = float(training.get("iterations_per_epoch", 1000))
    paper_batch = int(training.get("batch", 16))
    train = params["train"]
    per_epoch, batch = float(train["iterations_per_epoch"]), int(train["batch"])
    short: dict[tuple[int, int], list[str]] = {}
    for name, run, epochs in entries:
        ours, theirs = round(run.epochs * per_epoch), round(epochs * paper_per_epoch)
        if ours * batch < DEMO_FRACTION * theirs * paper_batch:
            short.setdefault((ours, theirs), []).append(name)
    if not short:
        return ""
    of, theirs_of = ("", "")
    if batch != paper_batch:
        of, theirs_of = f" of batch {batch}", f" of batch {paper_batch}"
    parts = {key: f"{key[0]:,} iterations{of}; {whose}: {key[1]:,}{theirs_of}" for key in short}
    if len(short) == 1:
        return f"demo-scale run ({next(iter(parts.values()))})"
    listed = ". ".join(f"{', '.join(dict.fromkeys(names))}: {parts[key]}"
                       for key, names in short.items())  # fmt: skip
    return f"demo-scale run ({listed})"
