"""The training and inference engine: one model, one run, on one machine or a node's GPUs.

Owns: :mod:`~drn.engine.settings` (what a run depends on: ``TrainSettings``; no torch),
:mod:`~drn.engine.train` (the paper's recipe, resumable, preemption-safe, multi-GPU),
:mod:`~drn.engine.dataset` (the decoded cache and the patches, a pure function of seed and step),
:mod:`~drn.engine.checkpoint` (checkpoint files, written atomically, loaded safely),
:mod:`~drn.engine.edsr_pytorch` (EDSR-PyTorch's state dicts, the authors' released weights
among them, checked and written as checkpoints of ``edsr_baseline``: ``drn import``),
:mod:`~drn.engine.releases` (the authors' released files as drn/reference records them; no torch),
:mod:`~drn.engine.inference` (whole images: tiles, self-ensemble; a model's protocol scores),
:mod:`~drn.engine.tracking` (MLflow: runs, their evaluations, weights fetched back),
:mod:`~drn.engine.reporter` (a training run's console, ``train.log`` and ``progress.json``),
:mod:`~drn.engine.runtime` (a training process's ranks, stop signals, random states, seeds),
:mod:`~drn.engine.holder` (one trainer per run directory: ``holder.json``; standard library),
:mod:`~drn.engine.mps` (a pack's private CUDA MPS daemon; standard library).

May import: :mod:`drn.core`, :mod:`drn.protocol`, :mod:`drn.models`, torch, MLflow, PyYAML
(to read drn/reference's records of the authors' releases). Never params.yaml: a run's settings
arrive resolved. This ``__init__`` imports nothing (the pipeline
reads :mod:`~drn.engine.settings` and :mod:`~drn.engine.releases` without torch).
"""
