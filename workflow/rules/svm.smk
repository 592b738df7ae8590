rule svm:
    input:
        f"{RUN}/features",
    output:
        f"{RUN}/svm.json",
    log:
        "results/logs/svm/{dataset}/{arch}/{variant}/{regime}/seed{seed}.log",
    benchmark:
        "results/benchmarks/svm/{dataset}/{arch}/{variant}/{regime}/seed{seed}.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        settings=stage_settings("svm"),
    shell:
        "python -m nnboundary svm --features {input} --settings {params.settings:q}"
        " --output {output} > {log} 2>&1"
