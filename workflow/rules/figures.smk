rule run_figure:
    input:
        features=f"{RUN}/features",
        svm=f"{RUN}/svm.json",
        checkpoints=f"{RUN}/checkpoints.pt",
        data=data_file,
    output:
        report(
            "results/figures/runs/{dataset}/{arch}/{variant}/{regime}/seed{seed}.png",
            caption="../report/run.rst",
            category="Decision boundaries",
            subcategory="{dataset}",
            labels={
                "dataset": "{dataset}",
                "arch": "{arch}",
                "variant": "{variant}",
                "regime": "{regime}",
                "seed": "{seed}",
            },
        ),
    log:
        "results/logs/figures/runs/{dataset}/{arch}/{variant}/{regime}/seed{seed}.log",
    benchmark:
        "results/benchmarks/run_figure/{dataset}/{arch}/{variant}/{regime}/seed{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        settings=figure_settings(),
    shell:
        "python -m nnboundary figures run --features {input.features} --svm {input.svm}"
        " --checkpoints {input.checkpoints} --data {input.data}"
        " --settings {params.settings:q} --output {output} > {log} 2>&1"


rule convergence_figure:
    input:
        metrics=seed_files("metrics.parquet"),
        collapse=seed_files("neural_collapse.parquet"),
    output:
        report(
            "results/figures/convergence/{dataset}/{arch}/{variant}.png",
            caption="../report/convergence.rst",
            category="Convergence",
            labels={"dataset": "{dataset}", "arch": "{arch}", "variant": "{variant}"},
        ),
    log:
        "results/logs/figures/convergence/{dataset}/{arch}/{variant}.log",
    benchmark:
        "results/benchmarks/convergence_figure/{dataset}/{arch}/{variant}.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        settings=figure_settings(),
    shell:
        "python -m nnboundary figures convergence --metrics {input.metrics}"
        " --collapse {input.collapse}"
        " --settings {params.settings:q} --output {output} > {log} 2>&1"


rule overview_figure:
    input:
        "results/metrics.parquet",
    output:
        report(
            "results/figures/overview.png",
            caption="../report/overview.rst",
            category="Overview",
        ),
    log:
        "results/logs/figures/overview.log",
    benchmark:
        "results/benchmarks/overview_figure.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        settings=figure_settings(),
    shell:
        "python -m nnboundary figures overview --metrics {input}"
        " --settings {params.settings:q} --output {output} > {log} 2>&1"


rule collapse_figure:
    input:
        "results/neural_collapse.parquet",
    output:
        report(
            "results/figures/collapse.png",
            caption="../report/collapse.rst",
            category="Neural collapse",
        ),
    log:
        "results/logs/figures/collapse.log",
    benchmark:
        "results/benchmarks/collapse_figure.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        settings=figure_settings(),
    shell:
        "python -m nnboundary figures collapse --table {input}"
        " --settings {params.settings:q} --output {output} > {log} 2>&1"


rule theory_figure:
    input:
        seed_files("linear_theory.parquet", regime="retrain_last"),
    output:
        report(
            "results/figures/theory/{dataset}/{arch}/{variant}.png",
            caption="../report/theory_figure.rst",
            category="The linear case",
            labels={"dataset": "{dataset}", "arch": "{arch}", "variant": "{variant}"},
        ),
    log:
        "results/logs/figures/theory/{dataset}/{arch}/{variant}.log",
    benchmark:
        "results/benchmarks/theory_figure/{dataset}/{arch}/{variant}.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        settings=figure_settings(),
    shell:
        "python -m nnboundary figures theory --tables {input}"
        " --settings {params.settings:q} --output {output} > {log} 2>&1"
