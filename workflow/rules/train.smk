"""Training: the paper's models at every scale, and the ablation runs. A job stopped by the
scheduler resumes from its checkpoint when retried; a run of changed settings starts afresh
(the old run directory is set aside, never deleted).

A job's log holds its latest attempt (Snakemake deletes it when it starts a job again); the run
directory's train.log keeps what every attempt printed ("== ... started ... ==", "resumed from
step N (of M)", progress, "stopped by signal ..."). `exec`: drn replaces the shell, which would
otherwise die of the SIGTERM Slurm sends the job before its time limit, and the job step would
take drn down with it before its checkpoint is written."""


rule train:
    input:
        unpack(lambda w: train_inputs(w.scale)),
    output:
        model=f"{RUNS}/{{model}}_x{{scale}}/model.pt",
        train_curve=f"{RUNS}/{{model}}_x{{scale}}/train_curve.csv",
        val_curve=f"{RUNS}/{{model}}_x{{scale}}/val_curve.csv",
    params:
        settings=lambda w: settings_of(w.model, w.scale),
    threads: job_threads("train")
    resources:
        **gpu_job("train"),
    log:
        f"{RESULTS}/logs/train/{{model}}_x{{scale}}.log",
    conda:
        ENV
    shell:
        "exec drn train --model {wildcards.model} --scale {wildcards.scale} "
        f"--gpus {gpus('train')} --if-changed restart > {{log}} 2>&1"


rule train_distillation_ablation:
    input:
        unpack(lambda w: train_inputs(w.scale)),
    output:
        model=f"{RUNS}/ablations/distillation/{{ablated}}_x{{scale}}/model.pt",
        train_curve=f"{RUNS}/ablations/distillation/{{ablated}}_x{{scale}}/train_curve.csv",
        val_curve=f"{RUNS}/ablations/distillation/{{ablated}}_x{{scale}}/val_curve.csv",
    params:
        settings=lambda w: settings_of(w.ablated, w.scale, DISTILLATION["epochs"]),
    threads: job_threads("train")
    resources:
        **gpu_job("train"),
    log:
        f"{RESULTS}/logs/train/ablation-distillation-{{ablated}}_x{{scale}}.log",
    conda:
        ENV
    shell:
        "exec drn train --model {wildcards.ablated} --scale {wildcards.scale} "
        f"--epochs {DISTILLATION['epochs']} "
        f"--run-dir {RUNS}/ablations/distillation/{{wildcards.ablated}}_x{{wildcards.scale}} "
        f"--gpus {gpus('train')} --if-changed restart > {{log}} 2>&1"


rule train_loss_ablation:
    input:
        unpack(lambda w: train_inputs(w.scale)),
    output:
        model=f"{RUNS}/ablations/loss/{{loss}}_x{{scale}}/model.pt",
        train_curve=f"{RUNS}/ablations/loss/{{loss}}_x{{scale}}/train_curve.csv",
        val_curve=f"{RUNS}/ablations/loss/{{loss}}_x{{scale}}/val_curve.csv",
    params:
        settings=lambda w: settings_of(LOSS["model"], w.scale, LOSS["epochs"], w.loss),
    threads: job_threads("train")
    resources:
        **gpu_job("train"),
    log:
        f"{RESULTS}/logs/train/ablation-loss-{{loss}}_x{{scale}}.log",
    conda:
        ENV
    shell:
        f"exec drn train --model {LOSS['model']} --scale {{wildcards.scale}} "
        f"--epochs {LOSS['epochs']} --loss {{wildcards.loss}} "
        f"--run-dir {RUNS}/ablations/loss/{{wildcards.loss}}_x{{wildcards.scale}} "
        f"--gpus {gpus('train')} --if-changed restart > {{log}} 2>&1"
