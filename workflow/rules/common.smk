# Everything that is not a rule: config validation, wildcard constraints, the grid, input
# functions and each rule's settings. The logic itself lives in nnboundary.config, shared with
# the command-line stages, so the Snakefile and the package read settings in one way.
import os
import sys
from pathlib import Path

SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))

from nnboundary import config as nbconfig  # noqa: E402
from snakemake.exceptions import WorkflowError  # noqa: E402

# Jobs run `python -m nnboundary ...`. With --sdm conda that is the python of the rule's
# environment, which holds only the dependencies, so the package goes on PYTHONPATH; otherwise
# the interpreter that runs Snakemake comes first on PATH (so .venv/bin/snakemake works without
# activating .venv). Snakemake formats the prefix like a command, hence the doubled braces.
USES_CONDA = "conda" in {str(m) for m in workflow.deployment_settings.deployment_method}
# The working directory is on it too: a config's own datasets and networks (source:
# "module:function") are imported from there, also on a cluster's compute node.
PREFIX = "export PYTHONPATH='%s':'%s':${{PYTHONPATH:-}}; " % (SRC, os.getcwd())
if not USES_CONDA:
    PREFIX += "export PATH='%s':$PATH; " % os.path.dirname(sys.executable)
shell.prefix(PREFIX)

# Validate against workflow/schemas/config.schema.yaml (plus the checks a schema cannot
# express) before anything is scheduled; the error lists every bad key and what is allowed.
config.update(nbconfig.validate_config(config))

# The grid: every (dataset, arch, seed) whose arch fits the dataset. Outputs go to results/
# under the working directory (--directory moves them elsewhere).
RUNS = nbconfig.runs(config)
# The seeds one job of each per-seed stage covers (grid.seeds_per_job): the stages' rules are
# defined once per block (workflow/rules/train.smk and the others).
SEED_BLOCKS = nbconfig.seed_blocks(config)
# The sets generated from the seed, prepared one file per seed: with seed blocks, one job per
# block writes a block's files (prepare.smk) and `prepare` writes only the fixed.npz files.
SEEDED_DATASETS = [
    d for d in nbconfig.dataset_names(config) if nbconfig.is_seeded(config, d)
]
PREPARE_BLOCKS = [block for block in SEED_BLOCKS if block.seeds and SEEDED_DATASETS]
PREPARED_PART = "fixed" if PREPARE_BLOCKS else r"seed\d+|fixed"


# A run's folder: dataset x arch x ablation variant x regime x seed.
RUN = "results/runs/{dataset}/{arch}/{variant}/{regime}/seed{seed}"
RUN_FULL = "results/runs/{dataset}/{arch}/{variant}/full/seed{seed}"
RUN_RETRAIN = "results/runs/{dataset}/{arch}/{variant}/retrain_last/seed{seed}"

# How many runs the grid expands to, stated before anything is scheduled (also in a dry run).
print(f"nnboundary grid: {nbconfig.grid_size(config)}", file=sys.stderr)


wildcard_constraints:
    dataset="|".join(nbconfig.dataset_names(config)),
    arch="|".join(nbconfig.arch_names(config)),
    variant=r"base|[a-z]+-[A-Za-z0-9_.]+(__[a-z]+-[A-Za-z0-9_.]+)*",
    regime="|".join(nbconfig.REGIMES),
    seed=r"\d+",
    # A prepared dataset: seed{N} for sets generated from the seed, fixed for the others.
    part=r"seed\d+|fixed",


def all_outputs():
    """Every table and figure of the grid."""
    groups = sorted({(r.dataset, r.arch, r.variant) for r in RUNS})
    return (
        [
            "results/metrics.parquet",
            "results/summary.csv",
            "results/summary.md",
            "results/summary.html",
            "results/findings.html",
            "results/claims.html",
            "results/findings.csv",
            "results/findings.md",
            "results/claims.csv",
            "results/seeds.csv",
            "results/excluded.csv",
            "results/convergence.csv",
            "results/neural_collapse.parquet",
            "results/collapse.csv",
            "results/collapse.html",
            "results/depth.csv",
            "results/depth.html",
            "results/figures/collapse.png",
            "results/config.yaml",
            "results/figures/overview.png",
            "results/job_times.csv",
            "results/job_times.html",
        ]
        + [f"results/figures/runs/{r.path}.png" for r in figure_runs()]
        + [f"results/figures/convergence/{d}/{a}/{v}.png" for d, a, v in groups]
    )


BENCHMARKS = "results/benchmarks"


def benchmark_files(wildcards=None):
    """The benchmark file of every job of the grid but job_times itself (its input): one
    folder per rule under results/benchmarks, named like the job's wildcards. The workflow
    test checks that this is exactly what a run writes."""
    groups = sorted({(r.dataset, r.arch, r.variant) for r in RUNS})
    cells = sorted({(r.dataset, r.arch, r.variant, r.regime) for r in RUNS})
    jobs = nbconfig.job_names(config)  # seed<s> per seed, or the seed blocks' names
    prepared = sorted({nbconfig.prepare_job(config, r.dataset, r.seed) for r in RUNS})
    return (
        [f"{BENCHMARKS}/prepare/{job}.tsv" for job in prepared]
        + [
            f"{BENCHMARKS}/{rule}/{d}/{a}/{v}/{job}.tsv"
            for rule, regime in (("train", "full"), ("retrain", "retrain_last"))
            for d, a, v, r in cells
            if r == regime
            for job in jobs
        ]
        + [
            f"{BENCHMARKS}/{rule}/{d}/{a}/{v}/{r}/{job}.tsv"
            for rule in ("features", "svm", "metrics", "collapse")
            for d, a, v, r in cells
            for job in jobs
        ]
        + [f"{BENCHMARKS}/run_figure/{r.path}.tsv" for r in figure_runs()]
        + [f"{BENCHMARKS}/convergence_figure/{d}/{a}/{v}.tsv" for d, a, v in groups]
        + [
            f"{BENCHMARKS}/{name}.tsv"
            for name in (
                "aggregate",
                "overview_figure",
                "collapse_figure",
                "config_record",
            )
        ]
    )


def figure_runs():
    """The runs that get a decision-boundary figure: those of figures.run_seeds (null: all)."""
    seeds = config["figures"].get("run_seeds")
    return [r for r in RUNS if seeds is None or r.seed in seeds]


def run_metrics_files(wildcards=None):
    """Every run's metrics table (input of the aggregate step)."""
    return [f"results/runs/{r.path}/metrics.parquet" for r in RUNS]


def run_collapse_files(wildcards=None):
    """Every run's neural-collapse table (input of the aggregate step)."""
    return [f"results/runs/{r.path}/neural_collapse.parquet" for r in RUNS]


def seed_files(name):
    """Input function: file `name` of every seed and regime of one dataset x arch x variant."""

    def files(wildcards):
        key = (wildcards.dataset, wildcards.arch, wildcards.variant)
        return [
            f"results/runs/{r.path}/{name}"
            for r in RUNS
            if (r.dataset, r.arch, r.variant) == key
        ]

    return files


def data_file(wildcards):
    """The prepared dataset of a run: one file per seed for the sets generated from the seed
    (nbconfig.is_seeded), one file shared by every seed for the others."""
    return nbconfig.data_path(wildcards.dataset, int(wildcards.seed), config)


def block_data(block):
    """Input function: the prepared dataset of each seed of one job of a seed block, in the
    order of its seeds (a set prepared once appears once per seed)."""

    def files(wildcards):
        return [
            nbconfig.data_path(wildcards.dataset, seed, config)
            for seed in block.of(wildcards)
        ]

    return files


def block_seeds(block):
    """Params function: the seeds of one job of a seed block, as arguments."""

    def seeds(wildcards):
        return " ".join(str(seed) for seed in block.of(wildcards))

    return seeds


def block_total(block, per_run):
    """Resource function: a per-run resource (`runtime`; for a train job also its threads and
    memory) times the number of seeds of one job of a seed block: its seeds run one after the
    other (retrain), or several at a time in processes of their own (train: Snakemake lowers
    the threads to the cores it has, and the job trains cpus // threads seeds at a time).
    """

    def get(wildcards):
        return per_run(wildcards) * len(block.of(wildcards))

    return get


def train_threads(block):
    """Threads function of a train job: the per-run threads times the block's seeds, and in a
    local run at most half of --cores, so that two cells train side by side: a cell whose
    slowest seed trains on alone (blobs seed 4 of the default grid: 9,440 of the cell's 13,810
    steps) leaves the other cores to the next cell instead of to nothing. A cluster job keeps
    the whole request (its CPUs are its own).
    """
    total = block_total(block, train_resource("threads"))

    def get(wildcards):
        threads = total(wildcards)
        if not workflow.local_exec:
            return threads
        try:
            cores = workflow.cores
        except WorkflowError:  # no --cores given
            return threads
        return max(1, min(threads, cores // 2))

    return get


def dataset_files(wildcards):
    """The .npz file of a dataset with a file: source (so that changing it reruns prepare)."""
    return nbconfig.source_files(config, wildcards.dataset)


def prepare_seed_option(wildcards):
    """`--seed N` for results/data/<set>/seed<N>.npz of a seeded set, nothing for fixed.npz;
    any other combination names a file no run uses."""
    seeded = nbconfig.is_seeded(config, wildcards.dataset)
    if seeded != (wildcards.part != "fixed"):
        name = "seed<N>.npz, one per seed" if seeded else "fixed.npz, one for all seeds"
        raise ValueError(
            f"results/data/{wildcards.dataset}/{wildcards.part}.npz is not a prepared "
            f"dataset: {wildcards.dataset} is prepared as results/data/{wildcards.dataset}/{name}"
        )
    return f"--seed {wildcards.part.removeprefix('seed')}" if seeded else ""


# Each rule gets only its own settings as a params string, so that changing e.g. svm.C reruns
# the svm step and what follows, never training.
def prepare_settings(wildcards):
    return nbconfig.to_json(nbconfig.dataset_settings(config, wildcards.dataset))


def arch_settings(wildcards):
    return nbconfig.to_json(
        nbconfig.arch_settings(
            config, wildcards.arch, wildcards.variant, wildcards.dataset
        )
    )


def train_settings(wildcards):
    return nbconfig.to_json(
        nbconfig.train_settings(
            config, wildcards.dataset, wildcards.arch, wildcards.variant
        )
    )


def retrain_settings(wildcards):
    return nbconfig.to_json(
        nbconfig.retrain_settings(
            config, wildcards.dataset, wildcards.arch, wildcards.variant
        )
    )


def config_json(wildcards):
    """The validated config with its defaults filled in, for results/config.yaml."""
    return nbconfig.to_json(config)


def train_resource(name):
    """Input function: resource `name` (gpu, threads, mem_mb, runtime) of a training job,
    sized per dataset x arch in the config's `resources` layers."""

    def get(wildcards):
        resources = nbconfig.train_resources(config, wildcards.dataset, wildcards.arch)
        return resources[name]

    return get


def depth_milestones():
    """The train losses of the depth table: every loss_milestones value of the grid's training
    and retraining settings, as arguments."""
    return " ".join(f"{m:g}" for m in nbconfig.loss_milestones(config))


def stage_settings(stage):
    return nbconfig.to_json(nbconfig.stage_settings(config, stage))


def figure_settings():
    """The drawing settings of the figures (which runs get one is not among them)."""
    settings = nbconfig.stage_settings(config, "figures")
    settings.pop("run_seeds", None)
    return nbconfig.to_json(settings)
