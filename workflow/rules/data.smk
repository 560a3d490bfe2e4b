rule fetch:
    output:
        directory(f"{DATA}/{{source}}"),
    params:
        spec=lambda w: config["sources"][w.source],
    threads: job_threads("fetch")
    resources:
        **job_resources("fetch"),
    log:
        f"{LOGS}/fetch/{{source}}.log",
    conda:
        ENV
    shell:
        supervised("drn fetch {wildcards.source}")


rule downscale:
    input:
        W.downscaled_from,
    output:
        directory(f"{DATA}/{{derived}}"),
    params:
        spec=lambda w: DOWNSCALED[w.derived],
    threads: job_threads("fetch")
    resources:
        **job_resources("fetch"),
    log:
        f"{LOGS}/fetch/{{derived}}.log",
    conda:
        ENV
    shell:
        supervised("drn fetch {wildcards.derived}")


rule prepare:
    input:
        hr=source_dir(config["train"]["data"]["hr"]),
        lr=W.train_lr,
    output:
        directory(f"{CACHE}/x{{scale}}"),
    params:
        patch=config["train"]["patch"],
    threads: job_threads("prepare")
    resources:
        **job_resources("prepare"),
    log:
        f"{LOGS}/prepare/x{{scale}}.log",
    conda:
        ENV
    shell:
        supervised("drn prepare --scale {wildcards.scale}")
