"""The Workflow of params.yaml (drn/pipeline/workflow.py: the plan, paths, wildcards, inputs,
resources by attempt, the supervised command) and the names the rules use."""

from functools import partial

from drn.pipeline.plan import BICUBIC, eval_path
from drn.pipeline.workflow import Workflow

W = Workflow(config, "params.yaml")
PLAN, DATA, LOGS, CACHE, RUN = W.plan, W.data, W.logs, W.cache, W.run_directory
PACKS = W.pack_records  # a pack's outcomes (resources.train.pack)
SUMMARY, REPORT, DOWNSCALED = W.summary, W.report, W.downscaled
source_dir, supervised, job_threads = W.source_dir, W.supervised, W.threads
# a rule's resources by attempt, read from the record beside its job's log as the rule names it
job_resources = partial(
    W.resources, log=lambda w, rulename: workflow.get_rule(rulename).log[0].apply_wildcards(w)
)
ENV = "../../environment.yml"  # the conda environment, relative to this file


wildcard_constraints:
    **W.wildcard_constraints(),
