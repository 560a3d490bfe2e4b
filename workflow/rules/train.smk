"""Training: every run of the plan (`drn plan`), one job each. A job stopped by the scheduler
resumes from its checkpoint when retried; a run of changed settings starts afresh (the old run
directory is set aside, never deleted).

A job's log holds its latest attempt (the supervisor, drn/pipeline/job.py, starts it afresh); the run
directory's train.log keeps what every attempt printed ("== ... started ... ==", "resumed from
step N (of M)", progress, "stopped by signal ..."), and the record beside the job's log
(train/{run}.attempts.jsonl) how each attempt ended ("stopped": retried, it resumes). The
supervisor passes Slurm's SIGTERM on to drn, and replaces the shell (`exec`, common.smk's
supervised()), which would otherwise die of that signal and end the job step, taking drn down
with it before its checkpoint is written."""


rule train:
    input:
        unpack(train_inputs),
    output:
        model=f"{RUN}/model.pt",
        train_curve=f"{RUN}/train_curve.csv",
        val_curve=f"{RUN}/val_curve.csv",
    params:
        settings=lambda w: result_settings(run_settings(w.run)),  # a change reruns the job
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    log:
        f"{LOGS}/train/{{run}}.log",
    conda:
        ENV
    shell:
        supervised(
            f"drn train --run {{wildcards.run}} --gpus {gpus('train')} --if-changed restart"
        )
