# The binary retrain_last runs against the linear theorem (nnboundary theory), one rule per
# seed block like collapse, and the grid's table; only where the grid retrains.
if RETRAIN_RUNS:
    for block in SEED_BLOCKS:

        rule:
            name:
                block.rule("theory")
            input:
                features=block.paths(f"{RUN_RETRAIN}/features"),
                checkpoints=block.paths(f"{RUN_RETRAIN}/checkpoints.pt"),
            output:
                block.paths(f"{RUN_RETRAIN}/linear_theory.parquet"),
            log:
                job_log(
                    "theory", block.named(RUN_JOB.replace("{regime}", "retrain_last"))
                ),
            benchmark:
                job_benchmark(
                    "theory", block.named(RUN_JOB.replace("{regime}", "retrain_last"))
                )
            conda:
                "../../envs/analysis.yaml"
            shell:
                "python -m nnboundary theory runs --features {input.features}"
                " --checkpoints {input.checkpoints} --output {output} > {log} 2>&1"

    rule theory_table:
        input:
            [f"results/runs/{r.path}/linear_theory.parquet" for r in RETRAIN_RUNS],
        output:
            csv=report(
                "results/linear_theory.csv",
                caption="../report/theory.rst",
                category="Data (CSV)",
            ),
            html=report(
                "results/linear_theory.html",
                caption="../report/theory.rst",
                category="Tables",
            ),
        log:
            job_log("theory", "table"),
        benchmark:
            job_benchmark("theory", "table")
        conda:
            "../../envs/analysis.yaml"
        shell:
            "python -m nnboundary theory table --inputs {input} --csv {output.csv}"
            " --html {output.html} > {log} 2>&1"
