# Everything that is not a rule: config validation, wildcard constraints, the grid, input
# functions and each rule's settings. The logic itself lives in nnboundary.settings, shared
# with the command-line stages, so the Snakefile and the package read settings in one way.
import os
import shlex
import sys
from pathlib import Path

SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))

from nnboundary.settings import config as nbconfig  # noqa: E402
from nnboundary.settings import entries, grid, keys, layers, space  # noqa: E402
from nnboundary.settings.commandline import to_json  # noqa: E402
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

# The command that runs the workflow, for results/provenance.json (rule provenance, a local
# rule, so its shell inherits this environment); an environment variable rather than a param,
# so that running another command does not make the record out of date.
os.environ.setdefault("NNBOUNDARY_COMMAND", shlex.join(["snakemake", *sys.argv[1:]]))

# Validate against workflow/schemas/config.schema.yaml (plus the checks a schema cannot
# express) before anything is scheduled; the error lists every bad key and what is allowed.
config.update(nbconfig.validate_config(config))

# The grid: every (dataset, arch, seed) whose arch fits the dataset. Outputs go to results/
# under the working directory (--directory moves them elsewhere).
RUNS = grid.runs(config)
RETRAIN_RUNS = [r for r in RUNS if r.regime == "retrain_last"]
# The seeds one job of each per-seed stage covers (grid.seeds_per_job): the stages' rules are
# defined once per block (workflow/rules/train.smk and the others).
SEED_BLOCKS = grid.seed_blocks(config)
# The sets generated from the seed, prepared one file per seed: with seed blocks, one job per
# block writes a block's files (prepare.smk) and `prepare` writes only the fixed.npz files.
SEEDED_DATASETS = [
    d for d in entries.dataset_names(config) if entries.is_seeded(config, d)
]
PREPARE_BLOCKS = [block for block in SEED_BLOCKS if block.seeds and SEEDED_DATASETS]
PREPARED_PART = "fixed" if PREPARE_BLOCKS else r"seed\d+|fixed"


# A run's folder: dataset x arch x ablation variant x regime x seed (nnboundary.settings.keys).
RUN = f"results/runs/{keys.RUN_FOLDER}"
RUN_FULL = RUN.replace("{regime}", "full")
RUN_RETRAIN = RUN.replace("{regime}", "retrain_last")

# Each job's log and benchmark file: <folder>/<rule>/<job>, the job named like the run's folder
# (RUN_JOB), or without its regime for train and retrain, which run one regime each (TRAIN_JOB);
# a seed block's jobs carry the block's name instead of seed{seed} (SeedBlock.named).
LOGS = "results/logs"
BENCHMARKS = "results/benchmarks"
RUN_JOB = keys.RUN_FOLDER
TRAIN_JOB = keys.RUN_FOLDER.replace("{regime}/", "")
PREPARE_JOB = "{dataset}/seed{seed}"


def job_log(rule, job):
    """The log file of job ``job`` (a name pattern) of ``rule``."""
    return f"{LOGS}/{rule}/{job}.log"


def job_benchmark(rule, job):
    """The benchmark file of job ``job`` (a name pattern) of ``rule``."""
    return f"{BENCHMARKS}/{rule}/{job}.tsv"


# How many runs the grid expands to and what they write against the room under results/,
# stated before anything is scheduled (also in a dry run); not again in each cluster job.
if workflow.is_main_process:
    print(f"nnboundary grid: {grid.grid_size(config)}", file=sys.stderr)
    SPACE, SPACE_SHORT = space.space_report(config, keys.RESULTS)
    print(
        f"nnboundary {'warning' if SPACE_SHORT else 'space'}: {SPACE}", file=sys.stderr
    )


wildcard_constraints:
    dataset="|".join(entries.dataset_names(config)),
    arch="|".join(entries.arch_names(config)),
    variant=r"base|[a-z]+-[A-Za-z0-9_.]+(__[a-z]+-[A-Za-z0-9_.]+)*",
    regime="|".join(keys.REGIMES),
    seed=r"\d+",
    # A prepared dataset: seed{N} for sets generated from the seed, fixed for the others.
    part=r"seed\d+|fixed",


def theory_groups():
    """The dataset x arch x variant groups with retrain_last runs of a dataset that may be
    binary (two classes in the catalog, or not known before loading): their theory figure.
    """
    return sorted(
        {
            (r.dataset, r.arch, r.variant)
            for r in RETRAIN_RUNS
            if entries.n_classes(config, r.dataset) in (2, None)
        }
    )


def all_outputs():
    """Every table and figure of the grid."""
    groups = sorted({(r.dataset, r.arch, r.variant) for r in RUNS})
    theory = (
        ["results/linear_theory.csv", "results/linear_theory.html"]
        + [f"results/figures/theory/{d}/{a}/{v}.png" for d, a, v in theory_groups()]
        if RETRAIN_RUNS
        else []
    )
    return theory + (
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
            "results/generalisation.csv",
            "results/generalisation.html",
            "results/figures/collapse.png",
            "results/config.yaml",
            "results/figures/overview.png",
            "results/job_times.csv",
            "results/job_times.html",
            "results/provenance.json",
        ]
        + [f"results/figures/runs/{r.path}.png" for r in figure_runs()]
        + [f"results/figures/convergence/{d}/{a}/{v}.png" for d, a, v in groups]
    )


def benchmark_files(wildcards=None):
    """The benchmark file of every job of the grid but job_times itself (its input): one
    folder per rule under results/benchmarks, named like the job's wildcards. The workflow
    test checks that this is exactly what a run writes."""
    groups = sorted({(r.dataset, r.arch, r.variant) for r in RUNS})
    cells = sorted({(r.dataset, r.arch, r.variant, r.regime) for r in RUNS})
    jobs = grid.job_names(config)  # seed<s> per seed, or the seed blocks' names
    prepared = sorted({grid.prepare_job(config, r.dataset, r.seed) for r in RUNS})
    return (
        [job_benchmark("prepare", job) for job in prepared]
        + [
            job_benchmark(rule, _job(TRAIN_JOB, job, d, a, v))
            for rule, regime in (("train", "full"), ("retrain", "retrain_last"))
            for d, a, v, r in cells
            if r == regime
            for job in jobs
        ]
        + [
            job_benchmark(rule, _job(RUN_JOB, job, d, a, v, r))
            for rule in ("features", "svm", "metrics", "collapse")
            for d, a, v, r in cells
            for job in jobs
        ]
        + [
            job_benchmark("theory", _job(RUN_JOB, job, d, a, v, r))
            for d, a, v, r in cells
            if r == "retrain_last"
            for job in jobs
        ]
        + ([job_benchmark("theory", "table")] if RETRAIN_RUNS else [])
        + [f"{BENCHMARKS}/theory_figure/{d}/{a}/{v}.tsv" for d, a, v in theory_groups()]
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


def _job(pattern, job, dataset, arch, variant, regime=None):
    """A job's name: ``pattern`` with its seed part the job's (seed<s> or a block's name)."""
    return pattern.replace("seed{seed}", job).format(
        dataset=dataset, arch=arch, variant=variant, regime=regime
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


def seed_files(name, regime=None):
    """Input function: file `name` of every seed and regime (or of `regime` alone) of one
    dataset x arch x variant."""

    def files(wildcards):
        key = (wildcards.dataset, wildcards.arch, wildcards.variant)
        return [
            f"results/runs/{r.path}/{name}"
            for r in RUNS
            if (r.dataset, r.arch, r.variant) == key and regime in (None, r.regime)
        ]

    return files


def data_file(wildcards):
    """The prepared dataset of a run: one file per seed for the sets generated from the seed
    (entries.is_seeded), one file shared by every seed for the others."""
    return grid.data_path(wildcards.dataset, int(wildcards.seed), config)


def block_data(block):
    """Input function: the prepared dataset of each seed of one job of a seed block, in the
    order of its seeds (a set prepared once appears once per seed)."""

    def files(wildcards):
        return [
            grid.data_path(wildcards.dataset, seed, config)
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
    return entries.source_files(config, wildcards.dataset)


def prepare_seed_option(wildcards):
    """`--seed N` for results/data/<set>/seed<N>.npz of a seeded set, nothing for fixed.npz;
    any other combination names a file no run uses."""
    seeded = entries.is_seeded(config, wildcards.dataset)
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
    return to_json(layers.dataset_settings(config, wildcards.dataset))


def arch_settings(wildcards):
    return to_json(
        layers.arch_settings(
            config, wildcards.arch, wildcards.variant, wildcards.dataset
        )
    )


def train_settings(wildcards):
    return to_json(
        layers.train_settings(
            config, wildcards.dataset, wildcards.arch, wildcards.variant
        )
    )


def retrain_settings(wildcards):
    return to_json(
        layers.retrain_settings(
            config, wildcards.dataset, wildcards.arch, wildcards.variant
        )
    )


def config_json(wildcards):
    """The validated config with its defaults filled in, for results/config.yaml."""
    return to_json(config)


def train_resource(name):
    """Input function: resource `name` (gpu, threads, mem_mb, runtime) of a training job,
    sized per dataset x arch in the config's `resources` layers."""

    def get(wildcards):
        resources = layers.train_resources(config, wildcards.dataset, wildcards.arch)
        return resources[name]

    return get


def depth_milestones():
    """The train losses of the depth table: every loss_milestones value of the grid's training
    and retraining settings, as arguments."""
    return " ".join(f"{m:g}" for m in grid.loss_milestones(config))


def stage_settings(stage):
    return to_json(layers.stage_settings(config, stage))


def figure_settings():
    """The drawing settings of the figures (which runs get one is not among them)."""
    settings = layers.stage_settings(config, "figures")
    settings.pop("run_seeds", None)
    return to_json(settings)
