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
        findings=report(
            "results/findings.csv",
            caption="../report/findings.rst",
            category="Tables",
        ),
        findings_md="results/findings.md",
        claims=report(
            "results/claims.csv",
            caption="../report/claims.rst",
            category="Tables",
        ),
        seeds=report(
            "results/seeds.csv",
            caption="../report/seeds.rst",
            category="Tables",
        ),
        excluded=report(
            "results/excluded.csv",
            caption="../report/excluded.rst",
            category="Tables",
        ),
        convergence=report(
            "results/convergence.csv",
            caption="../report/convergence_table.rst",
            category="Tables",
        ),
    log:
        "results/logs/aggregate/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate/aggregate.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m nnboundary aggregate --inputs {input} --metrics {output.metrics}"
        " --summary-csv {output.csv} --summary-md {output.md}"
        " --findings-csv {output.findings} --findings-md {output.findings_md}"
        " --claims-csv {output.claims} --seeds-csv {output.seeds}"
        " --excluded-csv {output.excluded}"
        " --convergence-csv {output.convergence} > {log} 2>&1"
