rule run_figure:
    input:
        features="results/runs/{dataset}/{arch}/seed{seed}/features",
        svm="results/runs/{dataset}/{arch}/seed{seed}/svm.json",
        checkpoints="results/runs/{dataset}/{arch}/seed{seed}/checkpoints.pt",
        data=data_file,
    output:
        report(
            "results/figures/runs/{dataset}/{arch}/seed{seed}.png",
            caption="../report/run.rst",
            category="Decision boundaries",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "arch": "{arch}", "seed": "{seed}"},
        ),
    log:
        "results/logs/figures/runs/{dataset}/{arch}/seed{seed}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        settings=stage_settings("figures"),
    shell:
        "python -m nnboundary figures run --features {input.features} --svm {input.svm}"
        " --checkpoints {input.checkpoints} --data {input.data}"
        " --settings {params.settings:q} --output {output} > {log} 2>&1"


rule convergence_figure:
    input:
        seed_metrics_files,
    output:
        report(
            "results/figures/convergence/{dataset}/{arch}.png",
            caption="../report/convergence.rst",
            category="Convergence",
            labels={"dataset": "{dataset}", "arch": "{arch}"},
        ),
    log:
        "results/logs/figures/convergence/{dataset}/{arch}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        settings=stage_settings("figures"),
    shell:
        "python -m nnboundary figures convergence --metrics {input}"
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
    conda:
        "../../envs/torch.yaml"
    params:
        settings=stage_settings("figures"),
    shell:
        "python -m nnboundary figures overview --metrics {input}"
        " --settings {params.settings:q} --output {output} > {log} 2>&1"
