# A prepared dataset: results/data/<set>/fixed.npz for a set prepared once for every seed, and
# seed<N>.npz for a set generated from the run's seed. With seed blocks (grid.seeds_per_job > 1)
# one job per block writes a seeded set's files (the rules below), so that `prepare` writes only
# the fixed.npz files; with 1 it writes both, one file per job.
rule prepare:
    input:
        dataset_files,
    output:
        "results/data/{dataset}/{part}.npz",
    log:
        job_log("prepare", "{dataset}/{part}"),
    benchmark:
        job_benchmark("prepare", "{dataset}/{part}")
    wildcard_constraints:
        part=PREPARED_PART,
    conda:
        "../../envs/torch.yaml"
    params:
        seed=prepare_seed_option,
        settings=prepare_settings,
    shell:
        "python -m nnboundary prepare --dataset {wildcards.dataset} {params.seed}"
        " --settings {params.settings:q} --output {output} > {log} 2>&1"


for block in PREPARE_BLOCKS:

    rule:
        name:
            block.rule("prepare")
        input:
            dataset_files,
        output:
            block.paths("results/data/{dataset}/seed{seed}.npz"),
        log:
            job_log("prepare", block.named(PREPARE_JOB)),
        benchmark:
            job_benchmark("prepare", block.named(PREPARE_JOB))
        wildcard_constraints:
            dataset="|".join(SEEDED_DATASETS),
        localrule: True
        conda:
            "../../envs/torch.yaml"
        params:
            seeds=block_seeds(block),
            settings=prepare_settings,
        shell:
            "python -m nnboundary prepare --dataset {wildcards.dataset}"
            " --seed {params.seeds} --settings {params.settings:q}"
            " --output {output} > {log} 2>&1"
