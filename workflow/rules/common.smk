"""Paths shared by the rules, all derived from params.yaml."""

BENCHMARKS = config["paths"]["benchmarks"]
RESULTS = config["paths"]["results"]


def eval_json(model, dataset="{dataset}", scale="{scale}"):
    """Where every evaluation writes its `drn score` JSON."""
    return f"{RESULTS}/eval/{model}/x{scale}/{dataset}.json"


def bicubic_results():
    return [
        eval_json("bicubic", dataset, scale)
        for dataset in config["evaluation"]["datasets"]
        for scale in config["evaluation"]["scales"]
    ]
