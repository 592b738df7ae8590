rule train:
    input:
        data=data_file,
    output:
        checkpoints=f"{RUN_FULL}/checkpoints.pt",
        history=f"{RUN_FULL}/history.tsv",
    log:
        "results/logs/train/{dataset}/{arch}/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{arch}/{variant}/seed{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: train_resource("threads")
    resources:
        gpu=train_resource("gpu"),
        mem_mb=train_resource("mem_mb"),
        runtime=train_resource("runtime"),
    params:
        arch=arch_settings,
        settings=train_settings,
    shell:
        "python -m nnboundary train --data {input.data} --arch {wildcards.arch}"
        " --seed {wildcards.seed} --variant {wildcards.variant}"
        " --arch-settings {params.arch:q} --settings {params.settings:q}"
        " --threads {threads} --checkpoints {output.checkpoints} --history {output.history}"
        " > {log} 2>&1"
