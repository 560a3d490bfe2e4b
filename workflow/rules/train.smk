# Training: each run in segments, one job up to each milestone, then one to its end (a deleted
# output is rewritten from last.pt); resources.train.pack > 1: a pack's job trains its runs.


rule train_segment:
    input:
        unpack(W.train_inputs),
    output:
        f"{RUN}/checkpoints/step_{{step}}.pt",
    params:
        settings=W.train_settings,  # the run's own: a milestone moved does not rerun it
        packed=W.packed_option,
    threads: W.train_threads
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
        packed=W.packed_option,
    threads: W.train_threads
    resources:
        **job_resources("train"),
    log:
        f"{LOGS}/train/{{run}}.log",
    conda:
        ENV
    shell:
        W.train_command(segment=False)


rule train_pack:
    input:
        unpack(W.pack_inputs),
    output:
        f"{W.pack_records}/{{pack}}/step_{{until}}.json",
    params:
        settings=W.pack_settings,  # its runs': a change reruns it
        runs=W.pack_runs,
    threads: W.pack_threads
    resources:
        **job_resources("pack"),
    log:
        f"{LOGS}/train/packs/{{pack}}_step{{until}}.log",
    conda:
        ENV
    shell:
        W.pack_command()
