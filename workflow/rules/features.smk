rule features:
    input:
        checkpoints=f"{RUN}/checkpoints.pt",
        data=data_file,
    output:
        directory(f"{RUN}/features"),
    log:
        "results/logs/features/{dataset}/{arch}/{variant}/{regime}/seed{seed}.log",
    benchmark:
        "results/benchmarks/features/{dataset}/{arch}/{variant}/{regime}/seed{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: train_resource("threads")
    resources:
        gpu=train_resource("gpu"),
        mem_mb=train_resource("mem_mb"),
    shell:
        "python -m nnboundary features --checkpoints {input.checkpoints} --data {input.data}"
        " --threads {threads} --output-dir {output} > {log} 2>&1"
