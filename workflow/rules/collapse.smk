rule collapse:
    input:
        features=f"{RUN}/features",
    output:
        f"{RUN}/neural_collapse.parquet",
    log:
        "results/logs/collapse/{dataset}/{arch}/{variant}/{regime}/seed{seed}.log",
    benchmark:
        "results/benchmarks/collapse/{dataset}/{arch}/{variant}/{regime}/seed{seed}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m nnboundary collapse --features {input.features} --output {output}"
        " > {log} 2>&1"
