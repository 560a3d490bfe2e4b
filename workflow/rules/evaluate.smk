"""Evaluation under the standard protocol (Y PSNR/SSIM, shave = scale, MATLAB-exact LR); every
evaluation writes {results}/eval/{label}/x{scale}/{dataset}.json."""


rule evaluate_bicubic:
    input:
        hr=lambda w: source_dir(w.dataset),
    output:
        eval_json("bicubic"),
    threads: job_threads("fetch")
    resources:
        **cpu_job("fetch"),
    log:
        f"{RESULTS}/logs/evaluate/bicubic_x{{scale}}_{{dataset}}.log",
    conda:
        ENV
    shell:
        "drn evaluate --model bicubic --hr {input.hr} --scale {wildcards.scale} "
        "--json {output} > {log} 2>&1"


rule evaluate:
    input:
        model=f"{RUNS}/{{model}}_x{{scale}}/model.pt",
        hr=lambda w: source_dir(w.dataset),
    output:
        eval_json("{model}"),
    threads: job_threads("evaluate")
    resources:
        **gpu_job("evaluate"),
    log:
        f"{RESULTS}/logs/evaluate/{{model}}_x{{scale}}_{{dataset}}.log",
    conda:
        ENV
    shell:
        "drn evaluate --model {input.model} --hr {input.hr} --scale {wildcards.scale} "
        "--json {output} > {log} 2>&1"


rule evaluate_ensemble:
    input:
        model=f"{RUNS}/{{model}}_x{{scale}}/model.pt",
        hr=lambda w: source_dir(w.dataset),
    output:
        eval_json("{model}-ensemble"),
    threads: job_threads("evaluate")
    resources:
        **gpu_job("evaluate"),
    log:
        f"{RESULTS}/logs/evaluate/{{model}}-ensemble_x{{scale}}_{{dataset}}.log",
    conda:
        ENV
    shell:
        "drn evaluate --model {input.model} --hr {input.hr} --scale {wildcards.scale} "
        "--json {output} --self-ensemble > {log} 2>&1"


rule evaluate_distillation_ablation:
    input:
        model=f"{RUNS}/ablations/distillation/{{ablated}}_x{{scale}}/model.pt",
        hr=lambda w: source_dir(w.dataset),
    output:
        eval_json("table2-{ablated}"),
    threads: job_threads("evaluate")
    resources:
        **gpu_job("evaluate"),
    log:
        f"{RESULTS}/logs/evaluate/table2-{{ablated}}_x{{scale}}_{{dataset}}.log",
    conda:
        ENV
    shell:
        "drn evaluate --model {input.model} --hr {input.hr} --scale {wildcards.scale} "
        "--json {output} > {log} 2>&1"


rule evaluate_loss_ablation:
    input:
        model=f"{RUNS}/ablations/loss/{{loss}}_x{{scale}}/model.pt",
        hr=lambda w: source_dir(w.dataset),
    output:
        eval_json("loss-{loss}"),
    threads: job_threads("evaluate")
    resources:
        **gpu_job("evaluate"),
    log:
        f"{RESULTS}/logs/evaluate/loss-{{loss}}_x{{scale}}_{{dataset}}.log",
    conda:
        ENV
    shell:
        "drn evaluate --model {input.model} --hr {input.hr} --scale {wildcards.scale} "
        "--json {output} > {log} 2>&1"


rule summary:
    input:
        all_evaluations(),
    output:
        SUMMARY,
    threads: job_threads("fetch")
    resources:
        **cpu_job("fetch"),
    log:
        f"{RESULTS}/logs/summary.log",
    conda:
        ENV
    shell:
        "drn collect > {log} 2>&1"


rule report:
    input:
        SUMMARY,
        all_evaluations(),
        [f"{RUNS}/{m}_x{s}/model.pt" for m in EVALUATION["models"] for s in EVALUATION["scales"]],
    output:
        REPORT,
    params:
        report=config["report"],
    threads: job_threads("evaluate")
    resources:
        **gpu_job("evaluate"),
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        ENV
    shell:
        "drn report > {log} 2>&1"
