"""The paper's numbers in MLflow: ``drn evaluate`` adds its scores to the run that trained the
checkpoint (model.pt names it), training logs its data as dataset inputs, and MLflow's compare
page shows the Table 3 metrics of several runs side by side (headless Chromium, slow)."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import SET5, SET14_SAMPLES
from pipeline import serving
from test_train import settings, tiny_overrides

from drn.cli import main
from drn.engine.checkpoint import load_checkpoint, mlflow_record, save_checkpoint
from drn.engine.tracking import images_digest
from drn.engine.train import load_validation, train
from drn.models import build_model

BIN = Path(sys.executable).parent
WAIT_S = 600  # the bound on every wait for a process; generous for a loaded 2-core machine


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def environment(**extra) -> dict[str, str]:
    env = {
        **os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1", **extra,
    }  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)  # the checkpoint says where to log
    return env


def evaluate_at_once(commands: list[list[str]], folder: Path) -> None:
    """``drn evaluate ...`` for every command, all started before any is waited for."""
    processes = []
    for i, args in enumerate(commands):
        with open(folder / f"evaluate{i}.log", "w") as log:
            processes.append(subprocess.Popen(
                [BIN / "drn", "evaluate", *args], env=environment(), stdout=log,
                stderr=subprocess.STDOUT,
            ))  # fmt: skip
    for i, process in enumerate(processes):
        assert process.wait(timeout=WAIT_S) == 0, (folder / f"evaluate{i}.log").read_text()
        assert "drn: warning" not in (folder / f"evaluate{i}.log").read_text()


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One tiny tracked run (sqlite store, Set5 validation): (run dir, store URI, run ID)."""
    folder = tmp_path_factory.mktemp("tracked")
    overrides = tiny_overrides(data, folder, 5, [
        "train.validation.source=Set5", "train.validation.images=2", "train.validation.every=5",
    ])  # fmt: skip
    assert train(settings(overrides), folder / "run", "cpu", report=False) == 0
    uri = f"sqlite:///{folder}/mlflow.db"
    (run,) = client(uri).search_runs(
        [client(uri).get_experiment_by_name("drn-repro").experiment_id]
    )
    return folder / "run", uri, run.info.run_id


def evaluate(tmp_path, model, *extra) -> tuple[int, dict]:
    out = tmp_path / "Set5.json"
    code = main(["evaluate", "--model", str(model), "--hr", str(SET5), "--scale", "2",
                 "--device", "cpu", "--json", str(out), *extra])  # fmt: skip
    return code, json.loads(out.read_text())


def test_model_pt_names_its_run_and_store_and_still_loads_weights_only(trained):
    run_dir, uri, run_id = trained
    record = mlflow_record(run_dir / "model.pt")
    assert record == {"run_id": run_id, "tracking_uri": uri}  # the store's absolute path
    assert load_checkpoint(run_dir / "model.pt")["mlflow"] == record  # weights_only=True
    assert mlflow_record(run_dir / "checkpoints/last.pt") is None  # only the final weights


def test_evaluate_logs_its_scores_to_the_run_that_trained_the_checkpoint(trained, tmp_path, capsys):
    run_dir, uri, run_id = trained
    code, result = evaluate(tmp_path, run_dir / "model.pt")
    assert code == 0 and result["mlflow_run_id"] == run_id
    assert f"logged to run run ({run_id})" in capsys.readouterr().out
    metrics = client(uri).get_run(run_id).data.metrics
    assert metrics["Set5_x2_psnr"] == pytest.approx(result["psnr"], rel=1e-12)
    assert metrics["Set5_x2_ssim"] == pytest.approx(result["ssim"], rel=1e-12)

    code, ensemble = evaluate(tmp_path, run_dir / "model.pt", "--self-ensemble")
    assert code == 0 and ensemble["self_ensemble"] and ensemble["mlflow_run_id"] == run_id
    metrics = client(uri).get_run(run_id).data.metrics
    assert metrics["Set5_x2_psnr_ensemble"] == pytest.approx(ensemble["psnr"], rel=1e-12)
    assert metrics["Set5_x2_ssim_ensemble"] == pytest.approx(ensemble["ssim"], rel=1e-12)
    assert metrics["Set5_x2_psnr"] == pytest.approx(result["psnr"], rel=1e-12)  # kept apart
    assert client(uri).get_run(run_id).info.status == "FINISHED"  # logging leaves it finished


def test_a_runs_uri_logs_to_the_run_it_names(trained, tmp_path, monkeypatch):
    _, uri, run_id = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = tmp_path / "Set14.json"
    args = ["evaluate", "--model", f"runs:/{run_id}/checkpoint/model.pt", "--hr",
            str(SET14_SAMPLES), "--scale", "2", "--device", "cpu", "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["mlflow_run_id"] == run_id
    metrics = client(uri).get_run(run_id).data.metrics
    assert metrics["Set14_x2_psnr"] == pytest.approx(result["psnr"], rel=1e-12)


def test_two_evaluations_of_one_run_log_at_once_to_a_sqlite_store(trained, tmp_path):
    run_dir, uri, run_id = trained
    shutil.copytree(SET5, tmp_path / "SetA")  # two datasets: two metric names, one store
    shutil.copytree(SET5, tmp_path / "SetB")
    evaluate_at_once([
        ["--model", str(run_dir / "model.pt"), "--hr", str(tmp_path / name), "--scale", "2",
         "--device", "cpu", "--json", str(tmp_path / f"{name}.json")]
        for name in ("SetA", "SetB")
    ], tmp_path)  # fmt: skip
    metrics = client(uri).get_run(run_id).data.metrics
    for name in ("SetA", "SetB"):
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert metrics[f"{name}_x2_psnr"] == pytest.approx(result["psnr"], rel=1e-12)
        assert metrics[f"{name}_x2_ssim"] == pytest.approx(result["ssim"], rel=1e-12)


def test_the_training_and_validation_data_are_dataset_inputs_of_the_run(trained, data):
    run_dir, uri, run_id = trained
    run = client(uri).get_run(run_id)
    inputs = {
        tag.value: entry.dataset
        for entry in run.inputs.dataset_inputs
        for tag in entry.tags
        if tag.key == "mlflow.data.context"
    }
    assert set(inputs) == {"training", "validation"}
    training, validation = inputs["training"], inputs["validation"]
    assert training.digest == run.data.tags["data_version"]
    assert training.name == "train t91 x2" and training.source_type == "local"
    saved = json.loads((run_dir / "settings.json").read_text())
    assert json.loads(training.source)["uri"] == str(Path(saved["cache"]).resolve())
    assert json.loads(training.profile)["pairs"] == 12
    overrides = tiny_overrides(data, run_dir.parent, 5, [
        "train.validation.source=Set5", "train.validation.images=2",
    ])  # fmt: skip
    images = [(name, hr) for name, hr, _ in load_validation(settings(overrides))]
    assert validation.digest == images_digest(images)
    assert validation.name == "validation Set5 x2"
    assert json.loads(validation.source)["uri"] == str((data / "Set5").resolve())
    assert json.loads(validation.profile) == {"images": 2, "names": ["baby", "bird"]}


def test_a_checkpoint_without_a_run_logs_nothing_and_still_writes_its_json(
    tmp_path, monkeypatch, capsys
):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # a store it could log to, if it had a run
    tiny = build_model("drn", 2, channels=16, block_channels=16, distill=4, blocks=2, groups=1)
    save_checkpoint(tmp_path / "old.pt", tiny)  # as untracked runs and older versions wrote
    code, result = evaluate(tmp_path, tmp_path / "old.pt")
    assert code == 0 and result["mlflow_run_id"] is None and len(result["images"]) == 5
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("MLflow")]
    assert line.startswith("MLflow: nothing logged:") and "names no MLflow run" in line
    assert not (tmp_path / "mlflow.db").exists()  # not even opened


def test_an_unreachable_store_is_a_warning_naming_it_and_the_json_is_kept(
    trained, tmp_path, monkeypatch, capsys
):
    run_dir, _, run_id = trained
    gone = f"sqlite:///{tmp_path}/moved/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", gone)
    code, result = evaluate(tmp_path, run_dir / "model.pt")
    assert code == 0 and result["mlflow_run_id"] == run_id
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("drn: warning: not logged to MLflow: ")
    assert gone in err and str(tmp_path / "Set5.json") in err
    assert not (tmp_path / "moved").exists()  # no empty store created

    other = f"sqlite:///{tmp_path}/other.db"  # a store, but not the one of this run
    client(other).search_experiments()
    capsys.readouterr()  # MLflow's lines creating it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    code, result = evaluate(tmp_path, run_dir / "model.pt")
    err = capsys.readouterr().err
    assert code == 0 and err.count("\n") == 1
    assert err.startswith(
        f"drn: warning: not logged to MLflow: MLflow store {other}: it has no run"
    )

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", down)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    code, result = evaluate(tmp_path, run_dir / "model.pt")
    err = capsys.readouterr().err
    assert code == 0 and result["mlflow_run_id"] == run_id
    assert err.count("\n") == 1 and f"MLflow store {down}: " in err and "refused" in err


def test_no_track_logs_nothing_but_the_json_names_the_run(trained, tmp_path, capsys):
    run_dir, uri, run_id = trained
    shutil.copytree(SET5, tmp_path / "SetC")
    out = tmp_path / "SetC.json"
    args = ["evaluate", "--model", str(run_dir / "model.pt"), "--hr", str(tmp_path / "SetC"),
            "--scale", "2", "--device", "cpu", "--json", str(out), "--no-track"]  # fmt: skip
    assert main(args) == 0
    assert json.loads(out.read_text())["mlflow_run_id"] == run_id
    assert "SetC_x2_psnr" not in client(uri).get_run(run_id).data.metrics
    assert "MLflow" not in capsys.readouterr().out


# ---------------------------------------------------------------- the MLflow UI, headless


@pytest.fixture
def mlflow_server(tmp_path):
    """``mlflow server`` on 127.0.0.1 with a sqlite backend in tmp."""
    with serving(f"sqlite:///{tmp_path}/server.db", tmp_path / "mlartifacts",
                 tmp_path / "server.log") as url:  # fmt: skip
        yield url


def chromium(*args: str, profile: Path) -> str:
    from drn.report.render import CHROMIUM_FLAGS
    from drn.report.render import chromium as find_chromium

    done = subprocess.run(
        [find_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


class _Text(HTMLParser):
    """The visible text of a page, one entry per text node (no scripts or styles)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs) -> None:
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag) -> None:
        self._hidden -= tag in ("script", "style")

    def handle_data(self, data) -> None:
        if not self._hidden and data.strip():
            self.texts.append(data.strip())


def format_metric(value: float) -> str:
    """A metric as MLflow's UI shows it (Utils.formatMetric in mlflow/server/js)."""
    if value == 0:
        return "0"
    if abs(value) < 1e-3:
        raise NotImplementedError("exponent notation")
    digits = 3 if abs(value) < 10 else 2 if abs(value) < 100 else 1
    rounded = math.floor(value * 10**digits + 0.5) / 10**digits  # JavaScript's Math.round
    return str(int(rounded)) if rounded == int(rounded) else str(rounded)


def metrics_table(dom: str, runs: int) -> dict[str, list[str]]:
    """The compare page's Metrics section: {metric: [value as shown, one per run]}; the names
    come first, then their values row by row."""
    parser = _Text()
    parser.feed(dom)
    texts = parser.texts
    start = texts.index("Metrics") + 1
    start += texts[start] == "Show diff only"
    end = texts.index("Artifacts", start)
    cells = texts[start:end]
    names = cells[: len(cells) // (runs + 1)]
    values = cells[len(names) :]
    return {name: values[i * runs : (i + 1) * runs] for i, name in enumerate(names)}


def test_the_compare_page_shows_table_3_metrics_of_two_demo_runs_side_by_side(
    demo_workspace, tmp_path
):
    """The demo trains drn with two seeds; the pipeline's evaluations logged their Set5 x2
    scores to those runs, which MLflow's compare page then shows side by side."""
    store = f"sqlite:///{demo_workspace}/mlflow.db"
    names = ("drn_x2", "drn_x2_s1")
    labels = {"drn_x2": "drn", "drn_x2_s1": "drn_s1"}
    results = [
        json.loads((demo_workspace / f"results/eval/{labels[n]}/x2/Set5.json").read_text())
        for n in names
    ]
    assert results[0]["psnr"] != results[1]["psnr"]  # two seeds, two numbers
    recorded = client(store)
    runs = {}
    for name, result in zip(names, results, strict=True):
        run_id = result["mlflow_run_id"]
        record = recorded.get_run(run_id)
        assert record.info.run_name == name
        assert record.data.metrics["Set5_x2_psnr"] == pytest.approx(result["psnr"], rel=1e-12)
        runs[name] = run_id
    experiment = recorded.get_run(runs["drn_x2"]).info.experiment_id
    with serving(store, demo_workspace / "mlartifacts", tmp_path / "server.log") as url:
        compare_page(url, runs, experiment, results, tmp_path)


def compare_page(
    url: str, runs: dict[str, str], experiment: str, results: list[dict], tmp_path: Path
) -> None:
    """Open the compare page of ``runs`` (name: ID) in headless Chromium: it names the runs and
    its Metrics table shows each one's Set5 x2 PSNR and SSIM as ``results`` hold them."""
    # the route of MLflow 3's UI (getCompareRunPageRoute in mlflow/server/js): hash routing
    query = urllib.parse.urlencode(
        {"runs": json.dumps(list(runs.values())), "experiments": json.dumps([experiment])}
    )
    page = f"{url}/#/compare-runs?{query}"
    budget = ["--virtual-time-budget=30000", "--window-size=1400,2600"]
    dom = chromium("--dump-dom", *budget, page, profile=tmp_path / "profile-dom")
    (tmp_path / "compare.html").write_text(dom)
    screenshot = tmp_path / "compare.png"
    chromium(f"--screenshot={screenshot}", *budget, page, profile=tmp_path / "profile-shot")
    assert screenshot.stat().st_size > 10_000

    parser = _Text()
    parser.feed(dom)
    assert "Comparing 2 Runs from 1 Experiment" in parser.texts, parser.texts[:50]
    names = parser.texts.index("Run Name:")
    assert parser.texts[names + 1 : names + 3] == list(runs)
    table = metrics_table(dom, len(runs))
    for key in ("psnr", "ssim"):  # one row per metric, the two runs' values side by side
        assert table[f"Set5_x2_{key}"] == [format_metric(r[key]) for r in results], table
