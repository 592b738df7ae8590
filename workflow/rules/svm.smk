rule svm:
    input:
        "results/runs/{dataset}/{arch}/seed{seed}/features",
    output:
        "results/runs/{dataset}/{arch}/seed{seed}/svm.json",
    log:
        "results/logs/svm/{dataset}/{arch}/seed{seed}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        settings=stage_settings("svm"),
    shell:
        "python -m nnboundary svm --features {input} --settings {params.settings:q}"
        " --output {output} > {log} 2>&1"
