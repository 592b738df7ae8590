rule metrics:
    input:
        features=f"{RUN}/features",
        svm=f"{RUN}/svm.json",
    output:
        f"{RUN}/metrics.parquet",
    log:
        "results/logs/metrics/{dataset}/{arch}/{variant}/{regime}/seed{seed}.log",
    benchmark:
        "results/benchmarks/metrics/{dataset}/{arch}/{variant}/{regime}/seed{seed}.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        settings=stage_settings("metrics"),
    shell:
        "python -m nnboundary metrics --features {input.features} --svm {input.svm}"
        " --settings {params.settings:q} --output {output} > {log} 2>&1"
