rule prepare:
    input:
        dataset_files,
    output:
        "results/data/{dataset}/{part}.npz",
    log:
        "results/logs/prepare/{dataset}/{part}.log",
    benchmark:
        "results/benchmarks/prepare/{dataset}/{part}.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        seed=prepare_seed_option,
        settings=prepare_settings,
    shell:
        "python -m nnboundary prepare --dataset {wildcards.dataset} {params.seed}"
        " --settings {params.settings:q} --output {output} > {log} 2>&1"
