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
