rule job_times:
    input:
        benchmark_files(),
    output:
        csv=report(
            "results/job_times.csv",
            caption="../report/job_times.rst",
            category="Data (CSV)",
        ),
        html=report(
            "results/job_times.html",
            caption="../report/job_times.rst",
            category="Job times",
        ),
    log:
        "results/logs/job_times.log",
    benchmark:
        "results/benchmarks/job_times.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m nnboundary benchmark jobs --inputs {input}"
        " --csv {output.csv} --html {output.html} > {log} 2>&1"
