rule features:
    input:
        checkpoints="results/runs/{dataset}/{arch}/seed{seed}/checkpoints.pt",
        data="results/data/{dataset}/seed{seed}.npz",
    output:
        directory("results/runs/{dataset}/{arch}/seed{seed}/features"),
    log:
        "results/logs/features/{dataset}/{arch}/seed{seed}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    shell:
        "python -m nnboundary features --checkpoints {input.checkpoints} --data {input.data}"
        " --threads {threads} --output-dir {output} > {log} 2>&1"
