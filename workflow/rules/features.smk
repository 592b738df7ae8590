# One rule per seed block, like train.
for block in SEED_BLOCKS:

    rule:
        name:
            block.rule("features")
        input:
            checkpoints=block.paths(f"{RUN}/checkpoints.pt"),
            data=block_data(block),
        output:
            [directory(path) for path in block.paths(f"{RUN}/features")],
        log:
            job_log("features", block.named(RUN_JOB)),
        benchmark:
            job_benchmark("features", block.named(RUN_JOB))
        conda:
            "../../envs/torch.yaml"
        threads: train_resource("threads")
        resources:
            gpu=train_resource("gpu"),
            mem_mb=train_resource("mem_mb"),
        shell:
            "python -m nnboundary features --checkpoints {input.checkpoints}"
            " --data {input.data} --threads {threads} --output-dir {output} > {log} 2>&1"
