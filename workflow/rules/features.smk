rule features:
    input:
        checkpoints="results/runs/{dataset}/{arch}/seed{seed}/checkpoints.pt",
        data=data_file,
    output:
        directory("results/runs/{dataset}/{arch}/seed{seed}/features"),
    log:
        "results/logs/features/{dataset}/{arch}/seed{seed}.log",
    conda:
        "../../envs/torch.yaml"
    threads: train_resource("threads")
    resources:
        gpu=train_resource("gpu"),
        mem_mb=train_resource("mem_mb"),
    shell:
        "python -m nnboundary features --checkpoints {input.checkpoints} --data {input.data}"
        " --threads {threads} --output-dir {output} > {log} 2>&1"
