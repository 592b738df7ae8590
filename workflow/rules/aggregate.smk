rule aggregate:
    input:
        metrics=run_metrics_files(),
        collapse=run_collapse_files(),
    output:
        metrics="results/metrics.parquet",
        csv=report(
            "results/summary.csv",
            caption="../report/summary.rst",
            category="Data (CSV)",
        ),
        md="results/summary.md",
        html=report(
            "results/summary.html",
            caption="../report/summary.rst",
            category="Tables",
        ),
        findings=report(
            "results/findings.csv",
            caption="../report/findings.rst",
            category="Data (CSV)",
        ),
        findings_md="results/findings.md",
        findings_html=report(
            "results/findings.html",
            caption="../report/findings.rst",
            category="Tables",
        ),
        claims=report(
            "results/claims.csv",
            caption="../report/claims.rst",
            category="Data (CSV)",
        ),
        claims_html=report(
            "results/claims.html",
            caption="../report/claims.rst",
            category="Tables",
        ),
        seeds=report(
            "results/seeds.csv",
            caption="../report/seeds.rst",
            category="Data (CSV)",
        ),
        excluded=report(
            "results/excluded.csv",
            caption="../report/excluded.rst",
            category="Data (CSV)",
        ),
        convergence=report(
            "results/convergence.csv",
            caption="../report/convergence_table.rst",
            category="Data (CSV)",
        ),
        collapse="results/neural_collapse.parquet",
        collapse_csv=report(
            "results/collapse.csv",
            caption="../report/collapse_table.rst",
            category="Data (CSV)",
        ),
        collapse_html=report(
            "results/collapse.html",
            caption="../report/collapse_table.rst",
            category="Tables",
        ),
        depth=report(
            "results/depth.csv",
            caption="../report/depth.rst",
            category="Data (CSV)",
        ),
        depth_html=report(
            "results/depth.html",
            caption="../report/depth.rst",
            category="Tables",
        ),
        generalisation=report(
            "results/generalisation.csv",
            caption="../report/generalisation.rst",
            category="Data (CSV)",
        ),
        generalisation_html=report(
            "results/generalisation.html",
            caption="../report/generalisation.rst",
            category="Tables",
        ),
    log:
        "results/logs/aggregate/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        milestones=depth_milestones(),
    shell:
        "python -m nnboundary aggregate --inputs {input.metrics} --metrics {output.metrics}"
        " --summary-csv {output.csv} --summary-md {output.md}"
        " --findings-csv {output.findings} --findings-md {output.findings_md}"
        " --claims-csv {output.claims} --seeds-csv {output.seeds}"
        " --excluded-csv {output.excluded} --summary-html {output.html}"
        " --findings-html {output.findings_html} --claims-html {output.claims_html}"
        " --collapse-inputs {input.collapse} --collapse {output.collapse}"
        " --collapse-csv {output.collapse_csv} --collapse-html {output.collapse_html}"
        " --depth-csv {output.depth} --depth-html {output.depth_html}"
        " --generalisation-csv {output.generalisation}"
        " --generalisation-html {output.generalisation_html}"
        " --milestones {params.milestones} --convergence-csv {output.convergence} > {log} 2>&1"
