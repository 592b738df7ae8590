rule metrics:
    input:
        features="results/runs/{dataset}/{arch}/seed{seed}/features",
        svm="results/runs/{dataset}/{arch}/seed{seed}/svm.json",
    output:
        "results/runs/{dataset}/{arch}/seed{seed}/metrics.parquet",
    log:
        "results/logs/metrics/{dataset}/{arch}/seed{seed}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        settings=stage_settings("metrics"),
    shell:
        "python -m nnboundary metrics --features {input.features} --svm {input.svm}"
        " --settings {params.settings:q} --output {output} > {log} 2>&1"
