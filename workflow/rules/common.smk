"""The Workflow of params.yaml (drn/pipeline/workflow.py: the plan, paths, wildcards, inputs,
resources by attempt, the supervised command) and the names the rules use."""

from drn.pipeline.plan import BICUBIC, eval_path
from drn.pipeline.workflow import Workflow

W = Workflow(config, "params.yaml")
PLAN, DATA, LOGS, CACHE, RUN = W.plan, W.data, W.logs, W.cache, W.run_directory
SUMMARY, REPORT, DOWNSCALED = W.summary, W.report, W.downscaled
source_dir, supervised, job_threads = W.source_dir, W.supervised, W.threads
job_resources = W.rule_resources(workflow)  # by attempt, from the record beside the job's log
ENV = "../../environment.yml"  # the conda environment, relative to this file


wildcard_constraints:
    **W.wildcard_constraints(),
