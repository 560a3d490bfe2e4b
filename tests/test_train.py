"""The training engine: it learns, it resumes exactly after SIGTERM, DDP, MLflow, the recipe."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, SET5, SET14_SAMPLES

from drn.core.errors import UsageError
from drn.core.images import read_image
from drn.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from drn.engine.inference import evaluate_model
from drn.engine.train import load_validation, train, validate
from drn.models import build_model
from drn.pipeline.params import apply_overrides, load_params
from drn.pipeline.settings import settings_from_params
from drn.protocol.scoring import evaluate_bicubic

BIN = Path(sys.executable).parent
TINY = "{channels: 16, block_channels: 16, distill: 4, blocks: 2, groups: 1}"


def tiny_overrides(data, tmp_path, iterations, extra=()):
    return [
        f"paths.data={data}", "sources.t91={local: null}", "sources.Set5={local: null}",
        "train.data.hr=t91", "train.data.lr_prefix=null", f"train.data.cache={tmp_path}/cache",
        "train.validation.source=null", "train.validation.images=0",
        "train.iterations_per_epoch=1", f"train.epochs={{drn: {iterations}}}", "train.batch=8",
        "train.patch=24", "train.log_every=5", "train.checkpoint_every=1000", "train.workers=0",
        "train.seeds=[7]", f"models.drn={TINY}", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        "evaluation.models=[drn]", "evaluation.ensemble_models=[]",
        "ablations.distillation.models=[drn]", "controls=[]", *extra,
    ]  # fmt: skip


def settings(overrides, model="drn", scale=2):
    return settings_from_params(
        apply_overrides(load_params(REPO / "params.yaml"), overrides), model, scale
    )


def test_the_recipe_defaults_are_the_papers():
    params = load_params(REPO / "params.yaml")
    drn, plus = settings_from_params(params, "drn", 2), settings_from_params(params, "drn_plus", 4)
    assert (drn.batch, drn.patch, drn.loss) == (16, 48, "l1")
    assert (drn.learning_rate, drn.betas, drn.eps) == (1e-4, (0.9, 0.999), 1e-8)
    assert (drn.decay_every, drn.decay_factor) == (200 * 1000, 0.5)
    assert (drn.iterations, plus.iterations) == (800 * 1000, 300 * 1000)
    assert drn.lr.endswith("data/DIV2K_train_LR_x2") and drn.init_from is None


@pytest.mark.slow
def test_a_small_drn_beats_bicubic_on_set5_after_a_few_hundred_iterations(data, tmp_path):
    """250 iterations at lr 5e-4 beat bicubic by half a dB, whatever the CPU's kernels.

    Margins over bicubic (Set5 x2 PSNR), measured on an AMD EPYC with AVX-512, 2026-12-01:

    | kernels | 1 thread | 2 threads |
    |---|---|---|
    | native (AVX-512) | +1.043 | +1.031 |
    | ATEN_CPU_CAPABILITY=default | +1.009 | +1.027 |
    | ATEN_CPU_CAPABILITY=avx2 | +1.043 | +1.031 |
    | DNNL_MAX_CPU_ISA=AVX2 | +1.010 | +1.015 |

    The earlier 150 iterations at lr 1e-3 were chaotic: on an Intel Xeon the native kernels gave
    -0.82 dB, ATEN_CPU_CAPABILITY=default -0.17 and DNNL_MAX_CPU_ISA=AVX2 above +0.3 (issue 10);
    here +0.93. At the lower rate the spread is 0.03 dB, so a 0.5 dB margin holds with room.
    """
    overrides = tiny_overrides(data, tmp_path, 250, [
        "train.batch=16", "train.patch=32", "train.optimizer.lr=5e-4",
        "models.drn={channels: 32, block_channels: 32, blocks: 3, groups: 2}",
    ])  # fmt: skip
    assert train(settings(overrides), tmp_path / "run", "cpu", report=False, track=False) == 0
    model, _ = model_from_checkpoint(tmp_path / "run/model.pt")
    ours = evaluate_model(model, SET5, 2, tile=None).psnr
    assert ours > evaluate_bicubic(SET5, 2).psnr + 0.5


@pytest.mark.parametrize("scale", [2, 3])
def test_validation_scores_as_drn_evaluate_does(tmp_path, scale):
    """The same model on the same images: training's validation and `drn evaluate`'s protocol
    give the same per-image numbers, colour and grayscale (bridge) alike."""
    folder = tmp_path / "val"
    folder.mkdir()
    for path in [*SET5.glob("*.png"), SET14_SAMPLES / "bridge.png"]:
        (folder / path.name).write_bytes(path.read_bytes())
    torch.manual_seed(1)
    model = build_model("drn", scale, channels=16, block_channels=16, distill=4, blocks=2, groups=1)
    run_settings = replace(settings([], scale=scale), val_hr=str(folder), val_images=6)
    images = load_validation(run_settings)
    names = [name for name, _, _ in images]
    assert names == ["baby", "bird", "bridge", "butterfly", "head", "woman"]
    ours = validate(model, images, scale, torch.device("cpu"), save_dir=tmp_path / "sr")
    theirs = evaluate_model(model, folder, scale, save_sr=tmp_path / "evaluate")
    assert ours.images == theirs.images and (ours.psnr, ours.ssim) == (theirs.psnr, theirs.ssim)
    for name in names:  # the same SR images, too
        np.testing.assert_array_equal(
            read_image(tmp_path / f"sr/{name}_x{scale}.png"),
            read_image(tmp_path / f"evaluate/{name}.png"),
        )


def test_a_runs_validation_curve_is_drn_evaluates_score_of_its_weights(data, tmp_path):
    overrides = tiny_overrides(data, tmp_path, 6, [
        "train.validation.source=Set5", "train.validation.images=5", "train.validation.every=3",
        "train.channels_last=false",
    ])  # fmt: skip
    assert train(settings(overrides), tmp_path / "run", "cpu", report=False, track=False) == 0
    model, _ = model_from_checkpoint(tmp_path / "run/model.pt")
    score = evaluate_model(model, data / "Set5", 2)
    history = load_checkpoint(tmp_path / "run/checkpoints/last.pt")["training"]["history"]
    assert history["val"][-1] == [6, score.psnr, score.ssim]
    curve = (tmp_path / "run/val_curve.csv").read_text().splitlines()
    assert curve[-1] == f"6,{score.psnr:.10g},{score.ssim:.10g}"


def run_drn(args, **kwargs):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([BIN / "drn", *args], env=env, text=True, **kwargs)


def train_args(overrides, run_dir):
    sets = [a for item in overrides for a in ("--set", item)]
    return ["train", "--model", "drn", "--scale", "2", "--run-dir", str(run_dir),
            "--device", "cpu", "--no-track", *sets]  # fmt: skip


@pytest.mark.slow
def test_a_sigterm_checkpoints_and_the_resumed_run_ends_with_identical_weights(data, tmp_path):
    overrides = tiny_overrides(data, tmp_path, 60, ["train.deterministic=true", "train.workers=2"])
    straight = run_drn(train_args(overrides, tmp_path / "straight"))
    assert straight.wait(timeout=300) == 0

    interrupted = run_drn(
        train_args(overrides, tmp_path / "interrupted"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    for line in interrupted.stdout:  # wait until it is well into training, then stop it
        if line.startswith("step 20/"):
            interrupted.send_signal(signal.SIGTERM)
            break
    output = interrupted.stdout.read()
    assert interrupted.wait(timeout=120) == 128 + signal.SIGTERM, output
    assert "stopped by signal" in output
    saved = load_checkpoint(tmp_path / "interrupted/checkpoints/last.pt")["training"]
    assert 20 <= saved["step"] < 60 and saved["stopped_by_signal"] == signal.SIGTERM
    assert not (tmp_path / "interrupted/model.pt").exists()

    resumed = run_drn(train_args(overrides, tmp_path / "interrupted"))
    assert resumed.wait(timeout=300) == 0
    a = load_checkpoint(tmp_path / "straight/model.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "interrupted/model.pt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigusr1_also_stops_the_run_with_a_checkpoint(data, tmp_path):
    overrides = tiny_overrides(data, tmp_path, 100_000)
    process = run_drn(train_args(overrides, tmp_path / "run"), stdout=subprocess.PIPE)
    for line in process.stdout:
        if line.startswith("step 10/"):
            process.send_signal(signal.SIGUSR1)
            break
    process.stdout.read()
    assert process.wait(timeout=120) == 128 + signal.SIGUSR1
    saved = load_checkpoint(tmp_path / "run/checkpoints/last.pt")["training"]
    assert saved["step"] >= 10 and saved["stopped_by_signal"] == signal.SIGUSR1


def test_resuming_with_other_settings_is_refused(data, tmp_path):
    overrides = tiny_overrides(data, tmp_path, 10)
    assert train(settings(overrides), tmp_path / "run", "cpu", report=False, track=False) == 0
    changed = settings([*overrides, "train.optimizer.lr=5e-4"])
    with pytest.raises(UsageError, match=r"started with learning_rate = 0\.0001, now 0\.0005"):
        train(changed, tmp_path / "run", "cpu", report=False, track=False)


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(data, tmp_path):
    overrides = tiny_overrides(data, tmp_path, 12)
    single = run_drn(train_args(overrides, tmp_path / "single"))
    assert single.wait(timeout=300) == 0
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    # `--gpus 2` launches torchrun with 2 processes; on CPUs they talk through gloo
    command = [BIN / "drn", *train_args(overrides, tmp_path / "ddp"), "--gpus", "2"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert load_checkpoint(tmp_path / "ddp/checkpoints/last.pt")["training"]["world_size"] == 2
    a = load_checkpoint(tmp_path / "single/model.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "ddp/model.pt")["state_dict"]
    for key in a:  # the same global batch of the same samples: the same steps up to rounding
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    settings_json = json.loads((tmp_path / "ddp/settings.json").read_text())
    assert settings_json["batch"] == 8


@pytest.mark.slow
def test_mlflow_records_params_metrics_tags_artifacts_and_the_model(data, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    overrides = tiny_overrides(data, tmp_path, 20, [
        "train.validation.source=Set5", "train.validation.images=2",
        "train.validation.every=10", "train.decay.every_epochs=10",
    ])  # fmt: skip
    assert train(settings(overrides), tmp_path / "run", "cpu", report=False) == 0
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("drn-repro")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model"] == "drn" and params["learning_rate"] == "0.0001"
    assert params["sizes.channels"] == "16" and params["loss"] == "l1"
    tags = run.data.tags
    assert (tags["variant"], tags["scale"], tags["loss"]) == ("drn", "2", "l1")
    assert len(tags["data_version"]) == 16 and tags["git_commit"]
    history = {m: client.get_metric_history(run.info.run_id, m) for m in ("loss", "lr", "val_psnr")}
    assert [m.step for m in history["loss"]] == [5, 10, 15, 20]
    assert [m.value for m in history["lr"]] == [1e-4, 5e-5, 5e-5, 2.5e-5]  # halved every 10
    assert [m.step for m in history["val_psnr"]] == [10, 20]
    for name in ("it_per_s", "data_wait_fraction", "val_ssim"):
        assert name in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"checkpoint", "samples"}
    samples = [a.path for a in client.list_artifacts(run.info.run_id, "samples")]
    assert samples == ["samples/baby_x2.png", "samples/bird_x2.png"]

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    (logged,) = mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id], output_format="list"
    )
    assert logged.source_run_id == run.info.run_id
    loaded = mlflow.pytorch.load_model(f"models:/{logged.model_id}")
    reference, _ = model_from_checkpoint(tmp_path / "run/model.pt")
    lr = torch.rand(1, 3, 13, 17)  # another size than the example it was exported with
    with torch.no_grad():
        torch.testing.assert_close(loaded(lr), reference(lr), rtol=1e-5, atol=1e-5)

    # the same weights back through `drn upscale --weights runs:/...`
    from drn.engine.tracking import resolve_weights

    fetched = resolve_weights(f"runs:/{run.info.run_id}/checkpoint/model.pt", client.tracking_uri)
    assert (
        load_checkpoint(fetched)["sha256"] == load_checkpoint(tmp_path / "run/model.pt")["sha256"]
    )


def test_x4_can_start_from_a_trained_x2_model(data, tmp_path):
    x2 = build_model("drn", 2, channels=16, block_channels=16, distill=4, blocks=2, groups=1)
    save_checkpoint(tmp_path / "x2.pt", x2)
    overrides = tiny_overrides(data, tmp_path, 1, [f"train.init_from.x4={tmp_path}/x2.pt"])
    changed = settings(overrides, scale=4)
    from drn.engine import train as engine

    x4 = build_model("drn", 4, channels=16, block_channels=16, distill=4, blocks=2, groups=1)
    copied = engine._init_from(x4, changed.init_from)
    assert copied == len(x2.state_dict()) - 2  # all but the x2-specific upsampling conv
    assert torch.equal(
        x4.state_dict()["body.0.blocks.1.conv.weight"],
        x2.state_dict()["body.0.blocks.1.conv.weight"],
    )


def test_bad_training_data_fails_before_training_starts(data, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    (broken / "t91/t5.png").write_bytes(b"\x89PNG truncated")
    overrides = tiny_overrides(broken, tmp_path, 10)
    process = run_drn(train_args(overrides, tmp_path / "run"), stderr=subprocess.PIPE)
    err = process.stderr.read()
    assert process.wait(timeout=120) == 1
    assert "t5.png: not a readable image" in err and err.startswith("drn: error:")
    assert not (tmp_path / "run/checkpoints").exists()


def test_a_setting_of_the_wrong_type_is_named(tmp_path, capsys):
    from drn.cli import main

    assert main(["train", "--model", "drn", "--scale", "2", "--set", "train.batch=many"]) == 2
    assert "train.batch: 'many' is not of type 'integer'" in capsys.readouterr().err
