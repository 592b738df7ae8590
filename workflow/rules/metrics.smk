# One rule per seed block, like train.
for block in SEED_BLOCKS:

    rule:
        name:
            block.rule("metrics")
        input:
            features=block.paths(f"{RUN}/features"),
            svm=block.paths(f"{RUN}/svm.json"),
        output:
            block.paths(f"{RUN}/metrics.parquet"),
        log:
            job_log("metrics", block.named(RUN_JOB)),
        benchmark:
            job_benchmark("metrics", block.named(RUN_JOB))
        conda:
            "../../envs/analysis.yaml"
        params:
            settings=stage_settings("metrics"),
        shell:
            "python -m nnboundary metrics --features {input.features} --svm {input.svm}"
            " --settings {params.settings:q} --output {output} > {log} 2>&1"
