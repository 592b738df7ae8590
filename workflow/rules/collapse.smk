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
            block.named(
                "results/logs/collapse/{dataset}/{arch}/{variant}/{regime}/seed{seed}.log"
            ),
        benchmark:
            block.named(
                "results/benchmarks/collapse/{dataset}/{arch}/{variant}/{regime}/seed{seed}.tsv"
            )
        conda:
            "../../envs/analysis.yaml"
        shell:
            "python -m nnboundary collapse --features {input.features} --output {output}"
            " > {log} 2>&1"
