# Model stages, one job per model of run.models: base model -> SFT data -> LoRA fine-tune -> predictions
# (base and fine-tuned) -> scores -> report; then one comparison report across models. Each rule reads only
# its own model's keys, so changing models.<m>.decode re-runs predictions and scores, never training.

MODELS = config["run"]["models"]
wildcard_constraints:
    model="|".join(map(re.escape, config["models"])),


# Each registry entry in its own params file: dvc.yaml tracks a model's keys there, since DVC cannot read a key
# path through a model name with dots (llama-3.1-8b-instruct). Snakemake reads params.yaml itself; the rule
# keeps both engines' DAGs the same.
rule model_registry:
    input:
        code=stage_code("model-registry"),
    output:
        directory("models/registry"),
    params:
        declared=declared("model-registry"),  # the keys the stage reads (stage_params.py): a change re-runs it
    log:
        "logs/model_registry.log",
    shell:
        "counseltune model-registry --out {output} 2>&1 | tee {log}"


rule base_model:
    input:
        code=stage_code("base-model"),
    output:
        directory("models/base/{model}"),
    params:
        declared=declared("base-model", model="model"),  # the keys the stage reads (stage_params.py): a change re-runs it
    resources:
        mem_mb=lambda wc: model(wc)["resources"]["mem_mb"],
    log:
        "logs/base_model/{model}.log",
    shell:
        "counseltune base-model --model {wildcards.model} --out {output} 2>&1 | tee {log}"


rule sft_data:
    input:
        tables=["data/processed/dialogs.parquet", "data/processed/turns.parquet"],
        synthetic=SYNTH_DATA,
        base="models/base/{model}",
        code=stage_code("sft-data"),
    output:
        data=directory("data/sft/{model}"),
        stats="metrics/sft/{model}.json",
    params:
        declared=declared("sft-data", model="model"),  # the keys the stage reads (stage_params.py): a change re-runs it
    log:
        "logs/sft_data/{model}.log",
    shell:
        "counseltune sft-data --model {wildcards.model} --base {input.base} --processed data/processed "
        "--synthetic data/synthetic --out {output.data} --stats {output.stats} 2>&1 | tee {log}"


rule finetune:
    threads: workflow.cores  # torch uses every core; two such jobs at once thrash
    input:
        data="data/sft/{model}",
        base="models/base/{model}",
        sft_stats="metrics/sft/{model}.json",
        code=stage_code("finetune"),
    output:
        adapter=directory("models/adapters/{model}"),
        metrics="metrics/train/{model}.json",
        live=directory("metrics/live/{model}"),
    params:
        declared=declared("finetune", model="model"),  # the keys the stage reads (stage_params.py): a change re-runs it
    resources:
        gpu=lambda wc: model(wc)["resources"]["gpus"],
        mem_mb=lambda wc: model(wc)["resources"]["mem_mb"],
        runtime=lambda wc: model(wc)["resources"]["runtime_min"],
    log:
        "logs/finetune/{model}.log",
    shell:
        # SLURM's scancel/preemption SIGTERMs every process of the job: the shell and tee ignore it, so finetune
        # (which handles it) can finish its step, checkpoint and exit 143 with its log still captured.
        "trap '' TERM; "
        "counseltune finetune --model {wildcards.model} --base {input.base} --data {input.data} --out {output.adapter} "
        "--metrics {output.metrics} --live {output.live} --checkpoints models/checkpoints/{wildcards.model} "
        "--sft-stats {input.sft_stats} 2>&1 | tee {log}"


rule predict_base:
    threads: workflow.cores  # torch uses every core; two such jobs at once thrash
    input:
        tables=["data/processed/dialogs.parquet", "data/processed/turns.parquet"],
        base="models/base/{model}",
        code=stage_code("predict"),
    output:
        "predictions/{model}/base.parquet",
    params:
        declared=declared("predict", model="model"),  # the keys the stage reads (stage_params.py): a change re-runs it
    resources:
        gpu=lambda wc: min(1, model(wc)["resources"]["gpus"]),
        mem_mb=lambda wc: model(wc)["resources"]["mem_mb"],
    log:
        "logs/predict/{model}-base.log",
    shell:
        "counseltune predict --model {wildcards.model} --variant base --base {input.base} --processed data/processed "
        "--out {output} 2>&1 | tee {log}"


rule predict:
    threads: workflow.cores  # torch uses every core; two such jobs at once thrash
    input:
        tables=["data/processed/dialogs.parquet", "data/processed/turns.parquet"],
        base="models/base/{model}",
        adapter="models/adapters/{model}",
        code=stage_code("predict"),
    output:
        "predictions/{model}/finetuned.parquet",
    params:
        declared=declared("predict", model="model"),  # the keys the stage reads (stage_params.py): a change re-runs it
    resources:
        gpu=lambda wc: min(1, model(wc)["resources"]["gpus"]),
        mem_mb=lambda wc: model(wc)["resources"]["mem_mb"],
    log:
        "logs/predict/{model}-finetuned.log",
    shell:
        "counseltune predict --model {wildcards.model} --variant finetuned --base {input.base} --adapter {input.adapter} "
        "--processed data/processed --out {output} 2>&1 | tee {log}"


rule evaluate:
    input:
        base="predictions/{model}/base.parquet",
        finetuned="predictions/{model}/finetuned.parquet",
        code=stage_code("evaluate"),
    output:
        scores="scores/{model}.parquet",
        metrics="metrics/eval/{model}.json",
    params:
        declared=declared("evaluate"),  # the keys the stage reads (stage_params.py): a change re-runs it
    log:
        "logs/evaluate/{model}.log",
    shell:
        "counseltune evaluate --model {wildcards.model} --predictions predictions/{wildcards.model} "
        "--scores {output.scores} --metrics {output.metrics} 2>&1 | tee {log}"


rule report_model:
    group: "reports"  # short CPU jobs: one cluster job (see data.smk)
    input:
        train="metrics/train/{model}.json",
        live="metrics/live/{model}",
        sft="metrics/sft/{model}.json",
        eval="metrics/eval/{model}.json",
        scores="scores/{model}.parquet",
        fidelity="metrics/fidelity/{model}.json",
        spend="metrics/spend/fidelity/{model}.json",
        code=stage_code("report-model"),
    output:
        directory("reports/{model}"),
    params:
        declared=declared("report-model", model="model"),  # the keys the stage reads (stage_params.py): a change re-runs it
    log:
        "logs/report_model/{model}.log",
    shell:
        "counseltune report-model --model {wildcards.model} --train {input.train} --live {input.live} --sft {input.sft} "
        "--eval {input.eval} --scores {input.scores} --fidelity {input.fidelity} --out {output} "
        "--spend {input.spend} 2>&1 | tee {log}"


# Every LLM job's spend table (llm/spend.py): what the comparison's spend section adds up
SPEND_TABLES = (expand("metrics/spend/synthesize/{generator}.json", generator=GENERATORS)
                + ["metrics/spend/judge_validation.json"] + expand("metrics/spend/fidelity/{model}.json", model=MODELS))


rule report_compare:
    group: "reports"  # short CPU jobs: one cluster job (see data.smk)
    input:
        eval=expand("metrics/eval/{model}.json", model=MODELS),
        scores=expand("scores/{model}.parquet", model=MODELS),
        fidelity=["metrics/fidelity/coder.json"] + expand("metrics/fidelity/{model}.json", model=MODELS),
        fidelity_tables=["data/fidelity/reference.parquet"] + expand("data/fidelity/{model}", model=MODELS),
        spend=SPEND_TABLES,
        synthesis=expand("metrics/synthesize/{generator}.json", generator=GENERATORS),  # the synthesis counts
        sft=expand("metrics/sft/{model}.json", model=MODELS),  # the synthetic mix each model trained on
        code=stage_code("report-compare"),
    output:
        directory("reports/comparison"),
    params:
        declared=declared("report-compare"),  # the keys the stage reads (stage_params.py): a change re-runs it
    log:
        "logs/report_compare.log",
    shell:
        "counseltune report-compare --eval-dir metrics/eval --scores-dir scores --fidelity-dir metrics/fidelity "
        "--fidelity-tables data/fidelity --out {output} --spend-dir metrics/spend --synthesize-dir metrics/synthesize "
        "--sft-dir metrics/sft 2>&1 | tee {log}"


MODEL_OUTPUTS = (
    ["models/registry"] + expand("models/base/{model}", model=MODELS)
    + expand("data/sft/{model}", model=MODELS) + expand("metrics/sft/{model}.json", model=MODELS)
    + expand("models/adapters/{model}", model=MODELS) + expand("metrics/train/{model}.json", model=MODELS)
    + expand("metrics/live/{model}", model=MODELS)
    + expand("predictions/{model}/{variant}.parquet", model=MODELS, variant=["base", "finetuned"])
    + expand("scores/{model}.parquet", model=MODELS) + expand("metrics/eval/{model}.json", model=MODELS)
    + expand("reports/{model}", model=MODELS) + ["reports/comparison"]
)
