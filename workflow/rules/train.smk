rule train:
    input:
        unpack(W.train_inputs),
    output:
        model=f"{RUN}/model.pt",
    params:
        settings=W.train_settings,  # the run's own (a milestone moved does not rerun it)
        until=W.until_option,  # a segment's: up to its milestone
        packed=W.packed_option,
    threads: W.train_threads
    resources:
        **job_resources("train"),
    log:
        f"{LOGS}/train/{{run}}.log",
    conda:
        ENV
    shell:
        W.train_command()


use rule train as train_segment with:
    output:
        f"{RUN}/checkpoints/step_{{step}}.pt",
    log:
        f"{LOGS}/train/{{run}}_step{{step}}.log",


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
