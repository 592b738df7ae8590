# Does the last layer of a network trained with cross-entropy converge to a linear SVM fitted on
# its last hidden layer? prepare -> train -> features -> svm -> metrics -> aggregate -> figures,
# over the dataset x arch x variant x regime x seed grid of config.yaml. Logic lives in the nnboundary package (src/).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


# Cheap steps run where Snakemake runs, also with a cluster executor: preparing data (which may
# download it: compute nodes often have no internet), tables, figures, the config record and the job times.
localrules:
    all,
    prepare,
    aggregate,
    run_figure,
    convergence_figure,
    overview_figure,
    collapse_figure,
    config_record,
    job_times,
    provenance,
    theory_figure,
    theory_table,


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/retrain.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/svm.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/collapse.smk"
include: "workflow/rules/theory.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/config.smk"
include: "workflow/rules/job_times.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
