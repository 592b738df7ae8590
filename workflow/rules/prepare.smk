rule prepare:
    output:
        "results/data/{dataset}/seed{seed}.npz",
    log:
        "results/logs/prepare/{dataset}/seed{seed}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        settings=prepare_settings,
    shell:
        "python -m nnboundary prepare --dataset {wildcards.dataset} --seed {wildcards.seed}"
        " --settings {params.settings:q} --output {output} > {log} 2>&1"
