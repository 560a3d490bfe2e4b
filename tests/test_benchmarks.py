"""The GPU benchmarks start: their settings pass today's params schema, and --quick runs on CPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import DATA, REPO

from drn.pipeline.params import apply_overrides, load_params, validate_params
from drn.pipeline.plan import build_plan
from drn.pipeline.settings import settings_from_params


def benchmark(name: str):
    """benchmarks/{name}.py as a module (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / f"benchmarks/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("quick", [False, True], ids=["gpu", "quick"])
def test_the_gpu_training_benchmark_settings_pass_the_schema(quick, tmp_path):
    gpu_train = benchmark("gpu_train")
    data = gpu_train.prepare_data(DATA, tmp_path)
    overrides = gpu_train.train_overrides(data, tmp_path, quick)
    params = apply_overrides(load_params(REPO / "params.yaml"), overrides)
    validate_params(params, "gpu_train.py's settings")
    run = build_plan(params).run(gpu_train.RUN)
    assert run.directory == f"{tmp_path}/runs/drn_x2"
    settings = settings_from_params(params, run.variant, run.scale, run.epochs, run.loss, run.seed)
    assert (settings.model, settings.scale, settings.loss) == ("drn", 2, "l1")
    assert settings.hr == str(data / "T91") and settings.val_hr == str(data / "Set5")
    assert settings.lr is None  # T91 has no official LR: the MATLAB-exact resize makes it
    images = {p.name for p in (DATA / "T91").glob("*.png")} - {"t20.png"}
    assert {p.name for p in (data / "T91").iterdir()} == images  # no t20, no MANIFEST.tsv
    if not quick:  # the paper's recipe and sizes, only the data and the reporting changed
        assert (settings.batch, settings.patch, settings.learning_rate) == (16, 48, 1e-4)
        assert (settings.iterations, settings.sizes, settings.compile) == (800_000, {}, "auto")


def test_the_gpu_training_benchmark_runs_quick_on_cpu(tmp_path):
    """--quick: a tiny `drn train --run drn_x2` on tests/data stopped by SIGTERM at step 20, its
    checkpoint evaluated, the model and loader benchmarks at tiny sizes; the tables printed."""
    done = subprocess.run(
        [sys.executable, REPO / "benchmarks/gpu_train.py", "--quick", "--out", tmp_path],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_train.json").read_text())
    train = result["train"]
    assert train["exit_code"] == 143 and train["checkpoint_step"] >= 20
    assert train["steady_it_per_s"] > 0 and train["set5_x2_psnr"] is not None
    assert abs(train["bicubic_set5_x2_psnr"] - 33.67) < 0.01
    assert set(result["loader_patches_per_s"]) == {"0", "1"}
    assert (tmp_path / "gpu_models_drn_plus.json").exists()
    tables = done.stdout[done.stdout.index("## drn train --run drn_x2") :]
    for row in ("| what | measured |", "| SIGTERM at ", "| drn_plus x4 | fast | bf16+graph |",
                "| workers | patches/s | per worker |"):  # fmt: skip
        assert row in tables
