"""What one training process holds besides its run: the ranks of a multi-GPU run (torchrun),
the scheduler's stop signals, the random generators' states a checkpoint resumes, and the seeds.

Used by :mod:`drn.engine.train`; torch, no files.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from drn.engine.settings import TrainSettings


def launch_under_torchrun(gpus: int, argv: list[str]) -> int:
    """Replace this process by torchrun running the same ``drn`` command on ``gpus`` GPUs
    (so that the scheduler's signals reach torchrun, which passes them to every rank)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={gpus}", "-m", "drn", *argv]  # fmt: skip
    os.execv(sys.executable, command)
    return 1  # not reached


@dataclass
class Cluster:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_cluster(device_name: str) -> tuple[Cluster, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cluster = Cluster(
        int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))
    )
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", cluster.local_rank if world > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return cluster, device


class StopSignals:
    """Remembers SIGTERM / SIGUSR1 (Slurm's warnings before a time limit or preemption)."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.received = 0
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state()[1].tolist(),
        "python": list(random.getstate()[1]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), 624, 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(settings: TrainSettings) -> None:
    """Seed torch, NumPy and Python with the run's seed; deterministic kernels if asked."""
    if settings.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = not settings.deterministic
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    random.seed(settings.seed)
