# One rule per seed block, like train.
for block in SEED_BLOCKS:

    rule:
        name:
            block.rule("retrain")
        input:
            checkpoints=block.paths(f"{RUN_FULL}/checkpoints.pt"),
            data=block_data(block),
        output:
            checkpoints=block.paths(f"{RUN_RETRAIN}/checkpoints.pt"),
            history=block.paths(f"{RUN_RETRAIN}/history.tsv"),
        log:
            job_log("retrain", block.named(TRAIN_JOB)),
        benchmark:
            job_benchmark("retrain", block.named(TRAIN_JOB))
        conda:
            "../../envs/torch.yaml"
        threads: train_resource("threads")
        resources:
            gpu=train_resource("gpu"),
            mem_mb=train_resource("mem_mb"),
            runtime=block_total(block, train_resource("runtime")),
        params:
            settings=retrain_settings,
        shell:
            "python -m nnboundary retrain --checkpoints {input.checkpoints}"
            " --data {input.data} --settings {params.settings:q} --threads {threads}"
            " --output {output.checkpoints} --history {output.history} > {log} 2>&1"
