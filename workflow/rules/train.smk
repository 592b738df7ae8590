# One rule per seed block (grid.seeds_per_job; with 1, a single rule `train` over a seed
# wildcard): a job trains its seeds in one process, or several at a time in forked workers
# when it has the cores (threads and memory are per run times the block's seeds; threads at most
# half of --cores in a local run, so that two cells train at once). The longest wall-time
# request starts first (priority).
for block in SEED_BLOCKS:

    rule:
        name:
            block.rule("train")
        input:
            data=block_data(block),
        output:
            checkpoints=block.paths(f"{RUN_FULL}/checkpoints.pt"),
            history=block.paths(f"{RUN_FULL}/history.tsv"),
        log:
            job_log("train", block.named(TRAIN_JOB)),
        benchmark:
            job_benchmark("train", block.named(TRAIN_JOB))
        # The longest wall-time request first: the priority is the runtime request (minutes).
        priority: block_total(block, train_resource("runtime"))
        conda:
            "../../envs/torch.yaml"
        threads: train_threads(block)
        resources:
            gpu=train_resource("gpu"),
            mem_mb=block_total(block, train_resource("mem_mb")),
            runtime=block_total(block, train_resource("runtime")),
        params:
            seeds=block_seeds(block),
            threads=train_resource("threads"),
            arch=arch_settings,
            settings=train_settings,
        shell:
            "python -m nnboundary train --data {input.data} --arch {wildcards.arch}"
            " --seed {params.seeds} --variant {wildcards.variant}"
            " --arch-settings {params.arch:q} --settings {params.settings:q}"
            " --threads {params.threads} --cpus {threads}"
            " --checkpoints {output.checkpoints}"
            " --history {output.history} > {log} 2>&1"
