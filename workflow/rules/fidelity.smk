# Counseling fidelity: an embedded MITI coder trained and validated on AnnoMI (one job), then per model the
# coder, the LLM judge, simulated CTRS sessions and the crisis probes on its predictions and its adapter.

rule miti_coder:
    input:
        tables=expand("data/interim/{source}/{table}", source=config["fidelity"]["coder"]["source"],
                      table=["dialogs.parquet", "turns.parquet"]),  # the AnnoMI source's ingest
        code=stage_code("miti-coder"),
    output:
        coder="models/miti_coder/coder.joblib",
        reference="data/fidelity/reference.parquet",
        held_out=["data/miti_coder/held_out/dialogs.parquet", "data/miti_coder/held_out/turns.parquet"],
        metrics="metrics/fidelity/coder.json",
    params:
        declared=declared("miti-coder"),  # the keys the stage reads (stage_params.py): a change re-runs it
        coder=config["fidelity"]["coder"],
    log:
        "logs/miti_coder.log",
    shell:
        "counseltune miti-coder --tables data/interim/{params.coder[source]} --coder {output.coder} "
        "--reference {output.reference} --held-out data/miti_coder/held_out --metrics {output.metrics} "
        "2>&1 | tee {log}"


rule judge_validation:
    input:
        held_out=["data/miti_coder/held_out/dialogs.parquet", "data/miti_coder/held_out/turns.parquet"],
        local_llm=LOCAL_LLM_INPUT,  # synthesize.smk: only for llm.backend local
        code=stage_code("judge-validation"),
    output:
        codes="data/judge_validation/codes.parquet",
        metrics="metrics/judge_validation.json",
        spend="metrics/spend/judge_validation.json",  # its part of the run's spend ledger (llm/spend.py)
    params:
        declared=declared("judge-validation"),  # the keys the stage reads (stage_params.py): a change re-runs it
    log:
        "logs/judge_validation.log",
    shell:
        "counseltune judge-validation --held-out data/miti_coder/held_out --codes {output.codes} "
        f"--metrics {{output.metrics}} --spend {{output.spend}} --inputs-for-backend {LLM_BACKEND} 2>&1 | tee {{log}}"


rule fidelity:
    threads: workflow.cores  # local models run torch on every core
    input:
        predictions=expand("predictions/{{model}}/{variant}.parquet", variant=["base", "finetuned"]),
        tables=["data/processed/dialogs.parquet", "data/processed/turns.parquet"],
        coder="models/miti_coder/coder.joblib",
        coder_metrics="metrics/fidelity/coder.json",
        judge_validation="metrics/judge_validation.json",
        base="models/base/{model}",
        adapter="models/adapters/{model}",
        local_llm=LOCAL_LLM_INPUT,  # the judge's and simulated client's model, when local (the counselor is base+adapter)
        code=stage_code("fidelity"),
    output:
        tables=directory("data/fidelity/{model}"),
        metrics="metrics/fidelity/{model}.json",
        spend="metrics/spend/fidelity/{model}.json",  # its part of the run's spend ledger (llm/spend.py)
    params:
        declared=declared("fidelity", model="model"),  # the keys the stage reads (stage_params.py): a change re-runs it
    resources:
        gpu=lambda wc: min(1, model(wc)["resources"]["gpus"]),
        mem_mb=lambda wc: model(wc)["resources"]["mem_mb"],
    log:
        "logs/fidelity/{model}.log",
    shell:
        "counseltune fidelity --model {wildcards.model} --predictions predictions/{wildcards.model} "
        "--processed data/processed --coder {input.coder} --coder-metrics {input.coder_metrics} "
        "--judge-validation {input.judge_validation} --base {input.base} --adapter {input.adapter} --out-dir {output.tables} --metrics {output.metrics} "
        f"--spend {{output.spend}} --inputs-for-backend {LLM_BACKEND} 2>&1 | tee {{log}}"


FIDELITY_OUTPUTS = (
    ["models/miti_coder/coder.joblib", "data/fidelity/reference.parquet", "metrics/fidelity/coder.json"]
    + ["data/miti_coder/held_out/dialogs.parquet", "data/miti_coder/held_out/turns.parquet"]
    + ["data/judge_validation/codes.parquet", "metrics/judge_validation.json", "metrics/spend/judge_validation.json"]
    + expand("metrics/spend/fidelity/{model}.json", model=MODELS)
    + expand("data/fidelity/{model}", model=MODELS) + expand("metrics/fidelity/{model}.json", model=MODELS)
)
