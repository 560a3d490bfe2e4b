rule evaluate_bicubic:
    input:
        hr=lambda w: source_dir(w.dataset),
    output:
        eval_path(config, BICUBIC, "{scale}", "{dataset}"),
    threads: job_threads("fetch")
    resources:
        **job_resources("fetch"),
    log:
        f"{LOGS}/evaluate/{BICUBIC}_x{{scale}}_{{dataset}}.log",
    conda:
        ENV
    shell:
        W.evaluate_command(bicubic=True)


rule import_released:
    input:
        W.released_file,  # params.yaml controls_released: the authors' file as downloaded
    output:
        W.released,
    params:
        format=W.released_format,
    threads: job_threads("fetch")
    resources:
        **job_resources("fetch"),
    log:
        f"{LOGS}/import/{{variant}}_x{{scale}}.log",
    conda:
        ENV
    shell:
        W.import_command()


rule evaluate:
    input:
        unpack(W.evaluation_inputs),  # model, hr; a milestone's: bicubic's score, its floor
    output:
        eval_path(config, "{label}", "{scale}", "{dataset}"),
    priority: 1  # before more training: a milestone's verdict while the rest of its run trains
    params:
        options=W.evaluation_options,  # --self-ensemble; --milestone: the early verdict
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    log:
        f"{LOGS}/evaluate/{{label}}_x{{scale}}_{{dataset}}.log",
    conda:
        ENV
    shell:
        W.evaluate_command(bicubic=False)


rule summary:
    input:
        [e.path for e in PLAN.evaluations],
    output:
        SUMMARY,
    threads: job_threads("fetch")
    resources:
        **job_resources("fetch"),
    log:
        f"{LOGS}/summary.log",
    conda:
        ENV
    shell:
        supervised("drn collect")


rule report:
    input:
        SUMMARY,
        [e.path for e in PLAN.evaluations],
        [run.model for run in PLAN.runs],  # visuals (main runs), curves and provenance (all)
    output:
        REPORT,
    params:
        settings=config,  # all of them: the report prints params.yaml as used
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    log:
        f"{LOGS}/report.log",
    conda:
        ENV
    shell:
        supervised("drn report")
