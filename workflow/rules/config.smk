rule config_record:
    output:
        report(
            "results/config.yaml",
            caption="../report/config.rst",
            category="Configuration",
        ),
    log:
        "results/logs/config_record.log",
    benchmark:
        "results/benchmarks/config_record.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        config=config_json,
    shell:
        "python -m nnboundary config --config-json {params.config:q} --output {output}"
        " > {log} 2>&1"


# Last of all: what made this result set (nnboundary.reporting.provenance). job_times.csv as
# input puts it after every job; no benchmark of its own, it reads the others.
rule provenance:
    input:
        record="results/config.yaml",
        job_times="results/job_times.csv",
        benchmarks=[*benchmark_files(), "results/benchmarks/job_times.tsv"],
    output:
        "results/provenance.json",
    log:
        "results/logs/provenance.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        workflow=workflow.basedir,
    shell:
        "python -m nnboundary config --provenance {output} --record {input.record}"
        " --workflow {params.workflow:q} --benchmarks {input.benchmarks} > {log} 2>&1"
