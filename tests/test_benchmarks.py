"""The GPU benchmarks start: their settings pass today's params schema, and --quick runs on CPU."""

from __future__ import annotations

import importlib.util
import json
import os
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
    sys.modules[spec.name] = module  # as an import does (dataclasses look their module up)
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


def test_the_pack_benchmark_runs_k_distinct_runs_of_the_plan(tmp_path):
    gpu_pack, gpu_train = benchmark("gpu_pack"), benchmark("gpu_train")
    sets = gpu_train.train_overrides(gpu_train.prepare_data(DATA, tmp_path), tmp_path, False)
    names = gpu_pack.run_names([*sets, "train.seeds=[0, 1, 2, 3, 4, 5, 6, 7]"], 8)
    assert names == ["drn_x2", *(f"drn_x2_s{s}" for s in range(1, 8))]
    params = apply_overrides(load_params(REPO / "params.yaml"), [*sets, "train.seeds=[0, 1]"])
    assert build_plan(params).run("drn_x2_s1").seed == 1


def test_the_pack_benchmark_reads_gpu_memory_by_process(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '4242, 5120'\necho '77, 812'\necho '[N/A], [N/A]'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert benchmark("gpu_pack").gpu_memory() == {4242: 5120.0, 77: 812.0}
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert benchmark("gpu_pack").gpu_memory() == {}


def test_the_gpu_pack_benchmark_runs_quick_on_cpu(tmp_path):
    """--quick: a warm-up, then K = 1 and 2 tiny `drn train` processes at once on tests/data,
    each stopped by SIGTERM once measured; MPS is unavailable (no NVIDIA tool on its PATH), and
    it says why."""
    env = {**os.environ, "PATH": str(tmp_path / "no-tools")}
    done = subprocess.run(
        [sys.executable, REPO / "benchmarks/gpu_pack.py", "--quick", "--out", tmp_path],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_pack.json").read_text())
    reason = result["mps_unavailable"]
    assert reason == "nvidia-cuda-mps-control is not on PATH"
    measured = [c for c in result["configs"] if c["sharing"] == "time slicing"]
    assert [c["k"] for c in measured] == [1, 2]
    for config in measured:
        assert config["problem"] is None and config["aggregate_it_per_s"] > 0
        assert len(config["runs"]) == config["k"]
        assert all(r["exit_code"] == 143 and r["it_per_s"] > 0 for r in config["runs"].values())
        assert config["aggregate_it_per_s"] == sum(r["it_per_s"] for r in config["runs"].values())
    assert set(measured[1]["runs"]) == {"drn_x2", "drn_x2_s1"}
    assert [c.get("skipped") for c in result["configs"] if c["sharing"] == "MPS"] == [
        f"MPS unavailable ({reason})"
    ] * 2
    tables = done.stdout[done.stdout.index("## drn_x2 runs co-located") :]
    assert f"MPS unavailable: {reason}" in tables
    rows = [line.split("|")[1:-1] for line in tables.splitlines() if line.startswith("| ")]
    assert [(r[0].strip(), r[1].strip()) for r in rows[1:]] == [
        ("1", "time slicing"), ("1", "MPS"), ("2", "time slicing"), ("2", "MPS"),
    ]  # fmt: skip
    assert float(rows[1][2]) > 0 and float(rows[3][2]) > 0  # aggregate iterations/s
    assert "n/a" in rows[1][5]  # no nvidia-smi here: no peak GPU memory
