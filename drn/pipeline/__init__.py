"""The reproduction as a plan of jobs: params.yaml, the experiment plan, Snakemake, DVC, Slurm.

Owns: :mod:`~drn.pipeline.params` (reading and validating params.yaml, ``--set`` overrides),
:mod:`~drn.pipeline.settings` (a run's ``TrainSettings`` resolved from params.yaml),
:mod:`~drn.pipeline.plan` (every run and evaluation, their names and files; milestones;
released weights evaluated without training),
:mod:`~drn.pipeline.packs` (which runs share a GPU: ``resources.train.pack``, pure),
:mod:`~drn.pipeline.pack_job` (a pack's runs trained at once, each its own process),
:mod:`~drn.pipeline.workflow` (what the Snakefile's rules compute: wildcards, inputs, resources
by attempt, the supervised command), :mod:`~drn.pipeline.dvc_stages` (dvc.yaml, generated),
:mod:`~drn.pipeline.cost` (GPU-hours before launch), :mod:`~drn.pipeline.download` (sources:
verified downloads, safe extraction, MATLAB-exact downscaled copies), :mod:`~drn.pipeline.job`
(the supervisor every rule's command runs under; standard library only),
:mod:`~drn.pipeline.status` (where the plan stands: ``drn status``, read-only, no torch),
:mod:`~drn.pipeline.locks` (a stale Snakemake lock, and whether a Snakemake works there).

May import: :mod:`drn.core`, :mod:`drn.protocol`, :mod:`drn.models`, :mod:`drn.engine` (its
torch-free settings and releases at import time; torch only inside functions that need it). This
``__init__`` imports nothing: ``python -m drn.pipeline.job`` and the Snakefile load no torch.
"""
