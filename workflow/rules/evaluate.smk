"""Evaluation under the standard protocol (Y PSNR/SSIM, shave = scale, MATLAB-exact LR)."""


rule evaluate_bicubic:
    input:
        hr=f"{BENCHMARKS}/{{dataset}}",
    output:
        eval_json("bicubic"),
    log:
        f"{RESULTS}/logs/evaluate_bicubic/x{{scale}}/{{dataset}}.log",
    shell:
        "drn evaluate --model bicubic --hr {input.hr} --scale {wildcards.scale} "
        "--json {output} > {log} 2>&1"
