"""Jobs use the CPUs they were given: the allotment, what a real ``drn`` process runs with, the
evaluation's parallel images, and the rules' ``threads``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import REPO
from PIL import Image
from pipeline import BIN, project, run

from drn.core import threads
from drn.core.errors import DataError, UsageError
from drn.core.threads import Allotment, decide
from drn.protocol.scoring import evaluate_bicubic, score_folders

# --- the allotment -----------------------------------------------------------------------------


def test_without_any_setting_the_allotment_is_the_cpus_the_process_may_run_on():
    assert decide({}, usable=6) == Allotment(6, "affinity")
    assert threads.affinity_cpus() == len(os.sched_getaffinity(0))


def test_the_allotment_follows_slurm_cpus_per_task():
    assert decide({"SLURM_CPUS_PER_TASK": "3"}, usable=16) == Allotment(3, "SLURM_CPUS_PER_TASK")


def test_the_allotment_never_exceeds_the_cpus_the_process_may_run_on():
    assert decide({"SLURM_CPUS_PER_TASK": "16"}, usable=4).cpus == 4
    assert decide({"OMP_NUM_THREADS": "16"}, usable=4).cpus == 4


def test_snakemakes_threads_come_before_slurms_cpus():
    # Snakemake exports a rule's `threads` to its shell job as OMP_NUM_THREADS
    environ = {"OMP_NUM_THREADS": "2", "SLURM_CPUS_PER_TASK": "8"}
    assert decide(environ, usable=8) == Allotment(2, "OMP_NUM_THREADS")


def test_drn_num_threads_overrides_everything_exactly():
    environ = {"DRN_NUM_THREADS": "12", "OMP_NUM_THREADS": "2", "SLURM_CPUS_PER_TASK": "8"}
    assert decide(environ, usable=4) == Allotment(12, "DRN_NUM_THREADS")
    assert decide({"DRN_NUM_THREADS": " ", "OMP_NUM_THREADS": "2"}, usable=4).cpus == 2


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_drn_num_threads_is_a_usage_error_naming_it(value):
    with pytest.raises(UsageError, match=f"DRN_NUM_THREADS={value!r}: expected a positive"):
        decide({"DRN_NUM_THREADS": value}, usable=4)


def test_unreadable_library_settings_are_skipped_and_a_nested_omp_list_gives_its_first():
    assert decide({"OMP_NUM_THREADS": "lots", "SLURM_CPUS_PER_TASK": "3"}, usable=8).cpus == 3
    assert decide({"OMP_NUM_THREADS": "4,2"}, usable=8).cpus == 4


def test_the_processes_of_a_torchrun_launch_share_the_allotment():
    assert decide({"OMP_NUM_THREADS": "8", "LOCAL_WORLD_SIZE": "2"}, usable=8).share == 4
    assert decide({"OMP_NUM_THREADS": "1", "LOCAL_WORLD_SIZE": "4"}, usable=8).share == 1


def test_children_are_told_the_share_and_single_threaded_blas():
    assert threads.child_environment(Allotment(8, "OMP_NUM_THREADS", processes=2)) == {
        "OMP_NUM_THREADS": "4",
        "OPENBLAS_NUM_THREADS": "1",
    }


# --- a real drn process ------------------------------------------------------------------------

# Runs a real `drn` command (`drn info` imports torch after start-up, as most commands do), then
# reports what the process runs with. TORCH_FIRST: torch already imported before start-up.
PROBE = """
import json, os, sys
if os.environ.get("TORCH_FIRST"):
    import torch
from threadpoolctl import threadpool_info
from drn.core import threads
from drn.cli import main
assert main(["info", "drn", "--scale", "2", "--size", "8x8"]) == 0
import torch
print(json.dumps({
    "torch": torch.get_num_threads(),
    "blas": [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"],
    "images": threads.image_workers(),
    "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"],
}))
"""

SETTINGS = ("DRN_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
            "SLURM_CPUS_PER_TASK", "LOCAL_WORLD_SIZE")  # fmt: skip


def probe(settings: dict[str, str], preexec_fn=None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS} | settings
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
        preexec_fn=preexec_fn, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("torch_first", [False, True], ids=["torch-after", "torch-before"])
def test_a_drn_process_given_one_slurm_cpu_runs_torch_and_blas_on_one_thread(torch_first):
    settings = {"SLURM_CPUS_PER_TASK": "1"} | ({"TORCH_FIRST": "1"} if torch_first else {})
    assert probe(settings) == {"torch": 1, "blas": [1], "images": 1, "OMP_NUM_THREADS": "1"}


def test_a_drn_process_confined_to_one_cpu_runs_torch_on_one_thread():
    one_cpu = min(os.sched_getaffinity(0))
    result = probe({}, preexec_fn=lambda: os.sched_setaffinity(0, {one_cpu}))
    assert result["torch"] == 1 and result["images"] == 1


def test_a_drn_process_runs_torch_on_its_allotment_and_blas_on_one_thread():
    cpus = len(os.sched_getaffinity(0))
    assert probe({}) == {"torch": cpus, "blas": [1], "images": cpus, "OMP_NUM_THREADS": str(cpus)}
    assert probe({"DRN_NUM_THREADS": "3"})["torch"] == 3


def test_a_bad_override_stops_drn_with_a_one_line_error():
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS} | {"DRN_NUM_THREADS": "x"}
    done = subprocess.run(
        [BIN / "drn", "info", "drn", "--scale", "2"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr == "drn: error: DRN_NUM_THREADS='x': expected a positive integer\n"


def test_a_snakemake_job_runs_drn_with_the_rules_threads(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "Snakefile").write_text(
        "rule probe:\n"
        "    output: 'out.json'\n"
        "    threads: 1\n"
        f"    shell: '{sys.executable} probe.py > {{output}}'\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    run(tmp_path, BIN / "snakemake", "--cores", "2", env=env)
    result = json.loads((tmp_path / "out.json").read_text().splitlines()[-1])
    assert result == {"torch": 1, "blas": [1], "images": 1, "OMP_NUM_THREADS": "1"}


# --- the evaluation's parallel images ---------------------------------------------------------


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "hr"
    folder.mkdir()
    for i in range(5):
        smooth = rng.integers(0, 256, (12 + i, 14, 3)).astype(np.uint8)
        Image.fromarray(smooth).resize((60 + 7 * i, 70), Image.BICUBIC).save(folder / f"{i}.png")
    return folder


def test_the_bicubic_evaluation_is_the_same_at_any_number_of_images_at_a_time(photos, tmp_path):
    serial = evaluate_bicubic(photos, 3, save_sr=tmp_path / "sr1", workers=1)
    parallel = evaluate_bicubic(photos, 3, save_sr=tmp_path / "sr4", workers=4)
    assert json.dumps(parallel.to_json()) == json.dumps(serial.to_json())
    assert [i.name for i in parallel.images] == ["0", "1", "2", "3", "4"]
    scored = score_folders(tmp_path / "sr4", photos, 3, workers=3)
    assert json.dumps(scored.to_json()["images"]) == json.dumps(serial.to_json()["images"])


def test_in_parallel_the_first_bad_image_in_order_is_the_one_reported(photos):
    for name in ("1", "3"):
        Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(photos / f"{name}.png")
    with pytest.raises(DataError, match=r"1\.png: 2x2 is smaller than the scale 3"):
        evaluate_bicubic(photos, 3, workers=4)


# --- the rules ---------------------------------------------------------------------------------


def test_every_rule_declares_threads():
    for path in [*sorted((REPO / "workflow").rglob("*.smk")), REPO / "workflow/Snakefile"]:
        for rule in re.split(r"^(?=(?:local)?rule )", path.read_text(), flags=re.M)[1:]:
            name = rule.split(":")[0]
            if "\n    shell:" in rule:  # not the target rule all: a job that runs drn
                # the CPUs its resources ask for: by kind, or by wildcards (a pack's, a run's)
                declared = re.search(r"\n    threads: (job_threads\(|W\.\w+_threads\n)", rule)
                assert declared, f"{path.name}: {name}"


def test_every_job_of_the_paper_dag_runs_with_the_cpus_it_asks_the_scheduler_for(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["resources"]["fetch"]["cpus"] = 2  # 1 would not show in the dry run
    params["resources"]["train"].update(gpu=2, cpus_per_gpu=3)
    out = run(project(tmp_path, params), BIN / "snakemake", "--dry-run", "--cores", "64")
    checked = set()
    for block in re.split(r"\n\s*\n", out):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        resources = re.search(r"^\s*resources: (.*)$", block, re.M)
        if not rule or not resources or rule.group(1) == "all":
            continue
        asked = dict(re.findall(r"(\w+)=([^,]+)", resources.group(1)))
        cpus = int(asked.get("cpus_per_task") or int(asked["cpus_per_gpu"]) * int(asked["gpu"]))
        assert re.search(rf"^\s*threads: {cpus}$", block, re.M), block
        checked.add(rule.group(1))
    assert checked == {"fetch", "evaluate_bicubic", "prepare", "train_segment", "train",
                       "evaluate", "summary", "report"}  # fmt: skip


# --- a library caller: a plain script, no drn command ------------------------------------------

# A script that chose two BLAS threads for its own work calls drn's public functions; the spies
# record the BLAS threads while they compute, then the script reads its own setting back.
LIBRARY_CALLER = """
import json
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
import drn
from drn.protocol import metrics, resize

def blas():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

seen = {}
window, rows = metrics.gaussian_window, resize._resize_rows
metrics.gaussian_window = lambda: seen.setdefault("ssim", blas()) and window()
resize._resize_rows = lambda *a: seen.setdefault("imresize", blas()) and rows(*a)
threadpool_limits(limits=2, user_api="blas")
image = np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)
drn.ssim(image, drn.imresize(drn.imresize(image, 0.5), 2))
print(json.dumps({**seen, "after": blas()}))
"""


def test_a_library_caller_gets_one_blas_thread_during_each_call_and_its_own_setting_after():
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    done = subprocess.run([sys.executable, "-c", LIBRARY_CALLER], env=env, capture_output=True,
                          text=True, cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"ssim": [1], "imresize": [1], "after": [2]}


# Two threads call drn at once, in a process whose main thread never set BLAS threads (OpenBLAS
# ignores a count set from another thread once the main thread has set one: README, "Library").
SIDE_BY_SIDE = """
import json, threading
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
from drn.core import threads

def blas():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

def in_thread(function):
    worker = threading.Thread(target=function)
    worker.start()
    return worker

in_thread(lambda: threadpool_limits(limits=2, user_api="blas")).join()  # the caller's setting
entered, first_may_leave, first_left, second_may_leave = (threading.Event() for _ in range(4))
seen = {}

@threads.blas_policy
def first():
    entered.wait()
    first_may_leave.wait()

@threads.blas_policy
def second():
    entered.set()
    first_may_leave.set()
    first_left.wait()
    seen["while the second runs alone"] = blas()
    second_may_leave.set()

one, two = in_thread(first), in_thread(second)
one.join()
first_left.set()
two.join()
seen["after both"] = blas()
print(json.dumps(seen))
"""


def test_calls_side_by_side_keep_one_blas_thread_until_the_last_returns():
    """Threads scoring images at once: the first call to return must not restore two BLAS
    threads under the one still running (as a per-call threadpool_limits context would)."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    done = subprocess.run([sys.executable, "-c", SIDE_BY_SIDE], env=env, capture_output=True,
                          text=True, cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"while the second runs alone": [1], "after both": [2]}


def test_under_the_drn_command_the_policy_stays_set_after_a_call(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    monkeypatch.setattr(threads, "_configured", Allotment(2, "affinity"))
    with threadpool_limits(limits=1, user_api="blas"):  # what configure() set for good
        threads.blas_policy(lambda: None)()
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {1}
