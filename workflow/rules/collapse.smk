# One rule per seed block, like train.
for block in SEED_BLOCKS:

    rule:
        name:
            block.rule("collapse")
        input:
            features=block.paths(f"{RUN}/features"),
        output:
            block.paths(f"{RUN}/neural_collapse.parquet"),
        log:
            job_log("collapse", block.named(RUN_JOB)),
        benchmark:
            job_benchmark("collapse", block.named(RUN_JOB))
        conda:
            "../../envs/analysis.yaml"
        shell:
            "python -m nnboundary collapse --features {input.features} --output {output}"
            " > {log} 2>&1"
