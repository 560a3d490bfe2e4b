# Training: every run of the plan (`drn plan`), one job each, resumed from its checkpoint when
# retried (a run of changed settings starts afresh). runs/<run>/train.log keeps every attempt.


rule train:
    input:
        unpack(W.train_inputs),
    output:
        model=f"{RUN}/model.pt",
        train_curve=f"{RUN}/train_curve.csv",
        val_curve=f"{RUN}/val_curve.csv",
    params:
        settings=W.train_settings,  # a change reruns the job
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    log:
        f"{LOGS}/train/{{run}}.log",
    conda:
        ENV
    shell:
        supervised(
            f"drn train --run {{wildcards.run}} --gpus {W.gpus('train')} --if-changed restart"
        )
