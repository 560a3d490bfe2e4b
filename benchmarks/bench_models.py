"""One training step (forward + backward, batch 16 of 48x48 LR patches) on the CPU, fast vs plain.

The fast DRN adds the residual in place into the last convolution's output; the plain reference
(tests/reference_drn.py) concatenates the growing tensor in every block, as the equations read.
Both have the same weights. Prints a Markdown table with the ratio measured in one run.
Run: .venv/bin/python benchmarks/bench_models.py
"""

from __future__ import annotations

import datetime
import sys

import torch
from common import REPO, best_of, machine

from drn.models import build_model, resolve_config

sys.path.insert(0, str(REPO / "tests"))
from reference_drn import ReferenceDRN


def train_step(model: torch.nn.Module, lr: torch.Tensor, hr: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    torch.nn.functional.l1_loss(model(lr), hr).backward()


def main() -> None:
    torch.manual_seed(0)
    print(
        f"# DRN training step on CPU, {datetime.date.today()}, {machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print("| model | fast | plain (concat) | plain / fast |")
    print("|---|---|---|---|")
    for scale in (2, 4):
        fast = build_model("drn", scale)
        plain = ReferenceDRN(resolve_config("drn"), scale)
        plain.load_state_dict(fast.state_dict())
        lr = torch.rand(16, 3, 48, 48)
        hr = torch.rand(16, 3, 48 * scale, 48 * scale)
        t_fast = best_of(lambda m=fast, x=lr, y=hr: train_step(m, x, y), repeats=3)
        t_plain = best_of(lambda m=plain, x=lr, y=hr: train_step(m, x, y), repeats=3)
        print(f"| drn x{scale} | {t_fast:.2f} s | {t_plain:.2f} s | {t_plain / t_fast:.2f} |")


if __name__ == "__main__":
    main()
