# One rule per seed block, like train.
for block in SEED_BLOCKS:

    rule:
        name:
            block.rule("svm")
        input:
            block.paths(f"{RUN}/features"),
        output:
            block.paths(f"{RUN}/svm.json"),
        log:
            job_log("svm", block.named(RUN_JOB)),
        benchmark:
            job_benchmark("svm", block.named(RUN_JOB))
        conda:
            "../../envs/analysis.yaml"
        params:
            settings=stage_settings("svm"),
        shell:
            "python -m nnboundary svm --features {input} --settings {params.settings:q}"
            " --threads {threads} --output {output} > {log} 2>&1"
