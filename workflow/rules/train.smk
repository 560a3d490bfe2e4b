"""Training: every run of the plan (`drn plan`), one job each. A job stopped by the scheduler
resumes from its checkpoint when retried; a run of changed settings starts afresh (the old run
directory is set aside, never deleted).

A job's log holds its latest attempt (Snakemake deletes it when it starts a job again); the run
directory's train.log keeps what every attempt printed ("== ... started ... ==", "resumed from
step N (of M)", progress, "stopped by signal ..."). `exec`: drn replaces the shell, which would
otherwise die of the SIGTERM Slurm sends the job before its time limit, and the job step would
take drn down with it before its checkpoint is written."""


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
        **gpu_job("train"),
    log:
        f"{LOGS}/train/{{run}}.log",
    conda:
        ENV
    shell:
        f"exec drn train --run {{wildcards.run}} --gpus {gpus('train')} --if-changed restart "
        "> {log} 2>&1"
