"""Names, paths and resources shared by the rules, all derived from params.yaml by drn."""

from drn.config import validate_params
from drn.settings import result_settings, settings_from_params

validate_params(config, "params.yaml")

DATA = config["paths"]["data"]
RESULTS = config["paths"]["results"]
RUNS = config["paths"]["runs"]
CACHE = config["train"]["data"]["cache"]
SUMMARY = [f"{RESULTS}/summary.md", f"{RESULTS}/summary.json"]
REPORTS = config["paths"]["reports"]
REPORT = [f"{REPORTS}/report.html", f"{REPORTS}/report.md"]
ENV = "../../environment.yml"
EVALUATION = config["evaluation"]
DISTILLATION = config["ablations"]["distillation"]
LOSS = config["ablations"]["loss"]
DOWNSCALED = config["downscaled"] or {}


def alternatives(names):
    """A wildcard constraint that accepts exactly these names."""
    return "|".join(sorted(str(n) for n in names)) or "(?!)"


wildcard_constraints:
    source=alternatives(config["sources"]),
    derived=alternatives(DOWNSCALED),
    model=alternatives(EVALUATION["models"]),
    ablated=alternatives(DISTILLATION["models"]),
    loss=alternatives(LOSS["losses"]),
    dataset=alternatives(set(EVALUATION["datasets"]) | {DISTILLATION["dataset"], LOSS["dataset"]}),
    scale=r"\d+",


def source_dir(name):
    return f"{DATA}/{name}"


def eval_json(label, scale="{scale}", dataset="{dataset}"):
    """Where every evaluation writes its `drn score` JSON."""
    return f"{RESULTS}/eval/{label}/x{scale}/{dataset}.json"


def train_inputs(scale):
    inputs = {"cache": f"{CACHE}/x{scale}"}
    if config["train"]["validation"]["source"]:
        inputs["validation"] = source_dir(config["train"]["validation"]["source"])
    return inputs


def settings_of(model, scale, epochs=None, loss=None):
    """What a training run computes from: Snakemake reruns the job when it changes."""
    return result_settings(settings_from_params(config, model, int(scale), epochs, loss))


def gpu_job(kind):
    """Scheduler resources of a GPU job from params.yaml (gpu: 0 makes it a CPU job)."""
    spec = config["resources"][kind]
    if spec["gpu"] == 0:
        resources = {"mem_mb": spec["mem_mb"], "runtime": spec["runtime"], "cpus_per_task": spec["cpus_per_gpu"]}
    else:
        resources = {key: spec[key] for key in ("gpu", "cpus_per_gpu", "mem_mb", "runtime")}
        if spec.get("gpu_model"):
            resources["gpu_model"] = spec["gpu_model"]
    if spec.get("stop_before_limit"):
        # Slurm sends SIGTERM to the job's step (snakemake, drn; not the batch shell, whose
        # death would end the job) that long before the time limit: drn checkpoints and exits.
        resources["slurm_extra"] = f"--signal=TERM@{spec['stop_before_limit']}"
    return resources


def cpu_job(kind):
    spec = config["resources"][kind]
    return {"mem_mb": spec["mem_mb"], "runtime": spec["runtime"], "cpus_per_task": spec["cpus"]}


def job_threads(kind):
    """A job's `threads`: the CPUs its resources ask for (cpus, or cpus_per_gpu per GPU, as the
    Slurm plugin's --cpus-per-task / --cpus-per-gpu). Snakemake exports them to the job as
    OMP_NUM_THREADS (capped at --cores), which drn.threads reads."""
    spec = config["resources"][kind]
    if "cpus" in spec:
        return spec["cpus"]
    return spec["cpus_per_gpu"] * max(1, spec["gpu"])


def gpus(kind):
    return config["resources"][kind]["gpu"]


def all_evaluations():
    scales, datasets = EVALUATION["scales"], EVALUATION["datasets"]
    jsons = [eval_json("bicubic", s, d) for s in scales for d in datasets]
    jsons += [eval_json(m, s, d) for m in EVALUATION["models"] for s in scales for d in datasets]
    jsons += [
        eval_json(f"{m}-ensemble", s, d)
        for m in EVALUATION["ensemble_models"]
        for s in scales
        for d in datasets
    ]
    jsons += [
        eval_json(f"table2-{m}", DISTILLATION["scale"], DISTILLATION["dataset"])
        for m in DISTILLATION["models"]
    ]
    jsons += [eval_json(f"loss-{l}", LOSS["scale"], LOSS["dataset"]) for l in LOSS["losses"]]
    return jsons
