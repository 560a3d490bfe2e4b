"""``drn train``'s console, the run's ``train.log`` (:class:`TrainingReporter`) and its
``progress.json`` (:func:`write_progress`)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from drn.core.images import atomic_write

PROGRESS = "progress.json"


def write_progress(run_dir: Path, progress: dict[str, Any]) -> None:
    """``{run_dir}/progress.json``, written atomically: where the run is (step, checkpoint step,
    iterations/s, time trained, validation PSNR, state: running, stopped, segment_done, finished
    or failed; who trains it), stamped ``updated``; what ``drn status`` and the plan read without
    torch."""
    record = {**progress, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with atomic_write(run_dir / PROGRESS) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


class TrainingReporter:
    """A progress bar on a terminal; plain periodic lines in batch jobs. The lines also go to
    ``history`` (appended: the log of every attempt of a run, which a scheduler's own log of a
    job does not keep, e.g. Snakemake deletes a job's log when it starts the job again)."""

    def __init__(self, total: int, start: int, enabled: bool, history: Path | None = None):
        self.enabled, self.total = enabled, total
        self.history = history.open("a") if history is not None else None
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self.bar = Bar(
                TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:.2f} it/s  loss {task.fields[loss]:.5f}"),
                TimeRemainingColumn(), transient=False,
            )  # fmt: skip
            self.task = self.bar.add_task("train", total=total, completed=start, rate=0, loss=0)
            self.bar.start()

    def update(self, step: int, metrics: dict[str, float]) -> None:
        """Show (and log) the metrics of the window ending at ``step``, with the time left."""
        left = (self.total - step) / max(metrics["it_per_s"], 1e-9)
        fields = " ".join(f"{k} {v:.5g}" for k, v in metrics.items())
        line = f"step {step}/{self.total} {fields} eta {left / 60:.1f} min"
        self.record(line)
        if self.bar is not None:
            self.bar.update(
                self.task, completed=step, rate=metrics["it_per_s"], loss=metrics["loss"]
            )
        elif self.enabled:
            print(line, flush=True)

    def say(self, text: str) -> None:
        """Show ``text`` and append it to the run's train.log."""
        self.record(text)
        if self.bar is not None:
            self.bar.console.print(text)
        elif self.enabled:
            print(text, flush=True)

    def record(self, line: str) -> None:
        """Append ``line`` to the run's train.log only (not shown on the console)."""
        if self.history is not None:
            self.history.write(line + "\n")
            self.history.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        if self.history is not None:
            self.history.close()
