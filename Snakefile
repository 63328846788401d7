# counseltune: raw corpora -> validated dialog tables (+ synthetic sessions) -> per-model adapters, predictions, scores, reports.
# The same DAG is in dvc.yaml; tests/dag/test_engines_agree.py fails on any drift between the two.
import glob

from snakemake.utils import min_version, validate

min_version("9.0")

configfile: "params.yaml"
validate(config, "schemas/params.schema.yaml")
try:  # Snakemake's YAML loader keeps the last of two equal keys: re-read with counseltune's, as every stage does
    from counseltune.config import ParamsError, load_params
    load_params("params.yaml")           # duplicate keys, NaN/inf, min > max, fractions: the CLI's exact checks
except ParamsError as err:
    raise WorkflowError(str(err))

include: "workflow/rules/common.smk"     # which sources run, the code each stage runs, path helpers
include: "workflow/rules/data.smk"       # ingest, curate, data report
include: "workflow/rules/synthesize.smk" # behavior planner, synthetic MI/CBT sessions (LLM client)
include: "workflow/rules/models.smk"     # base model, SFT data, fine-tune, predict, evaluate, reports
include: "workflow/rules/fidelity.smk"   # MITI coder (AnnoMI), per-model MITI/judge/CTRS/safety

rule all:
    input: all_outputs()                 # every intermediate too: a failed job must not leave a stale downstream file

rule data:                               # the data stages alone: `snakemake --cores N data`
    input: data_outputs()

onsuccess:                               # what the run's LLM calls cost (per stage and in total)
    from counseltune.llm.usage import run_summary
    if (usage := run_summary(glob.glob("metrics/synthesize/*.json"))):
        print(usage)
