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
            block.named(
                "results/logs/svm/{dataset}/{arch}/{variant}/{regime}/seed{seed}.log"
            ),
        benchmark:
            block.named(
                "results/benchmarks/svm/{dataset}/{arch}/{variant}/{regime}/seed{seed}.tsv"
            )
        conda:
            "../../envs/analysis.yaml"
        params:
            settings=stage_settings("svm"),
        shell:
            "python -m nnboundary svm --features {input} --settings {params.settings:q}"
            " --threads {threads} --output {output} > {log} 2>&1"
