# Synthetic sessions: a next-behavior planner fitted on AnnoMI's expert codes, then one job per generator of
# synthesize.run, every request through the LLM client of params `llm`. The client's response cache
# (llm.cache_dir) lives outside the DAG on purpose: a re-run job pays only for requests never answered.

GENERATORS = config["synthesize"]["run"]
LOCAL_LLM = config["llm"]["local"]["model"]
LLM_BACKEND = config["llm"]["backend"]
# The LLM client's model is an input only when it is local: a remote backend builds and loads no local model.
# dvc.yaml declares the same (written by `counseltune code-deps --write` for params.yaml's llm.backend); the stage
# refuses to run when its inputs were declared for another backend (--inputs-for-backend).
LOCAL_LLM_INPUT = [f"models/base/{LOCAL_LLM}"] if LLM_BACKEND == "local" else []
SYNTH_TABLES = TABLES + ["generation.json"]
wildcard_constraints:
    generator="|".join(map(re.escape, config["synthesize"]["generators"])),


rule plan_behaviors:
    input:
        tables=["data/processed/dialogs.parquet", "data/processed/turns.parquet"],
        code=stage_code("plan-behaviors"),
    output:
        "data/synthetic/planner.json",
    params:
        declared=declared("plan-behaviors"),  # the keys the stage reads (stage_params.py): a change re-runs it
    log:
        "logs/plan_behaviors.log",
    shell:
        "counseltune plan-behaviors --processed data/processed --out {output} 2>&1 | tee {log}"


rule synthesize:
    threads: workflow.cores  # the local backend runs torch on every core
    input:
        tables=["data/processed/dialogs.parquet", "data/processed/turns.parquet"],
        planner="data/synthetic/planner.json",
        local_llm=LOCAL_LLM_INPUT,
        code=stage_code("synthesize"),
    output:
        tables=expand("data/synthetic/{{generator}}/{table}", table=SYNTH_TABLES),
        stats="metrics/synthesize/{generator}.json",
        spend="metrics/spend/synthesize/{generator}.json",  # its part of the run's spend ledger (llm/spend.py)
    params:
        declared=declared("synthesize", generator="generator"),  # the keys the stage reads (stage_params.py): a change re-runs it
    log:
        "logs/synthesize/{generator}.log",
    shell:
        "counseltune synthesize --generator {wildcards.generator} --processed data/processed "
        "--planner {input.planner} --out-dir data/synthetic/{wildcards.generator} --stats {output.stats} "
        f"--spend {{output.spend}} --inputs-for-backend {LLM_BACKEND} 2>&1 | tee {{log}}"


# Everything under data/synthetic: what the SFT data stage reads from (DVC's dep is the whole folder).
SYNTH_DATA = ["data/synthetic/planner.json"] + expand("data/synthetic/{generator}/{table}", generator=GENERATORS,
                                                      table=SYNTH_TABLES)
SYNTH_OUTPUTS = SYNTH_DATA + expand("metrics/{kind}/{generator}.json", kind=["synthesize", "spend/synthesize"],
                                     generator=GENERATORS)
