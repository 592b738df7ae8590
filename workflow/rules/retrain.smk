rule retrain:
    input:
        checkpoints=f"{RUN_FULL}/checkpoints.pt",
        data=data_file,
    output:
        checkpoints=f"{RUN_RETRAIN}/checkpoints.pt",
        history=f"{RUN_RETRAIN}/history.tsv",
    log:
        "results/logs/retrain/{dataset}/{arch}/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/retrain/{dataset}/{arch}/{variant}/seed{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: train_resource("threads")
    resources:
        gpu=train_resource("gpu"),
        mem_mb=train_resource("mem_mb"),
        runtime=train_resource("runtime"),
    params:
        settings=retrain_settings,
    shell:
        "python -m nnboundary retrain --checkpoints {input.checkpoints} --data {input.data}"
        " --settings {params.settings:q} --threads {threads}"
        " --output {output.checkpoints} --history {output.history} > {log} 2>&1"
