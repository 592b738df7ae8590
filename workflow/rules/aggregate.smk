rule aggregate:
    input:
        run_metrics_files(),
    output:
        metrics="results/metrics.parquet",
        csv=report(
            "results/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
        ),
        md="results/summary.md",
    log:
        "results/logs/aggregate/aggregate.log",
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m nnboundary aggregate --inputs {input} --metrics {output.metrics}"
        " --summary-csv {output.csv} --summary-md {output.md} > {log} 2>&1"
