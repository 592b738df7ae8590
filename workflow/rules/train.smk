rule train:
    input:
        data="results/data/{dataset}/seed{seed}.npz",
    output:
        checkpoints="results/runs/{dataset}/{arch}/seed{seed}/checkpoints.pt",
        history="results/runs/{dataset}/{arch}/seed{seed}/history.tsv",
    log:
        "results/logs/train/{dataset}/{arch}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{arch}/seed{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    params:
        arch=arch_settings,
        settings=train_settings,
    shell:
        "python -m nnboundary train --data {input.data} --arch {wildcards.arch}"
        " --seed {wildcards.seed} --arch-settings {params.arch:q} --settings {params.settings:q}"
        " --threads {threads} --checkpoints {output.checkpoints} --history {output.history}"
        " > {log} 2>&1"
