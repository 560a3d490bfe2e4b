"""Helpers shared by the benchmarks: a repeatable timer, the test image, the machine's name."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DRN_SHARED_DATA", REPO.parent / "shared" / "data"))


def best_of(function: Callable[[], object], repeats: int = 7) -> float:
    """The fastest of ``repeats`` timed calls after one warm-up, in seconds (noise only adds)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def div2k_sized_photo() -> np.ndarray:
    """A 2040x1356 RGB photograph (DIV2K's typical size): Urban100 img_001 resized with Lanczos."""
    with Image.open(SHARED / "Urban100/img_001.webp") as image:
        return np.asarray(image.convert("RGB").resize((2040, 1356), Image.LANCZOS))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
