# Training: every trained run of the plan (`drn plan`) in segments, one job up to each milestone
# (checkpoints/step_<N>.pt, evaluated while the rest trains), then one to its end, all in one run
# directory and MLflow run; a retried job resumes from its checkpoint. The outputs are what a
# segment writes at its end; one deleted (a refused job's) is written again from last.pt.


rule train_segment:
    input:
        unpack(W.train_inputs),
    output:
        f"{RUN}/checkpoints/step_{{step}}.pt",
    params:
        settings=W.train_settings,  # the run's own: a milestone moved does not rerun it
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    log:
        f"{LOGS}/train/{{run}}_step{{step}}.log",
    conda:
        ENV
    shell:
        W.train_command(segment=True)


rule train:
    input:
        unpack(W.train_inputs),
    output:
        model=f"{RUN}/model.pt",
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
        W.train_command(segment=False)
