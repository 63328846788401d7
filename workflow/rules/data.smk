# Data stages: ingest (one job per source), curate, data report. Thin wiring around `counseltune <stage>`.

DATA_REPORT = ["data/processed/report.md", "data/processed/report.html",
               "data/processed/figures/turns_per_dialog.png", "data/processed/figures/utterance_length.png"]


rule ingest:
    input:
        raw=raw_files,
        code=ingest_code,
    output:
        expand("data/interim/{{source}}/{table}", table=TABLES),
        stats="metrics/ingest/{source}.json",
    params:
        raw=lambda wc: config["sources"][wc.source]["path"],
        source=lambda wc: config["sources"][wc.source],   # re-run when this source's params change
        ingest=config["ingest"],
    log:
        "logs/ingest/{source}.log",
    shell:
        "counseltune ingest --source {wildcards.source} --raw {params.raw:q} --out-dir data/interim/{wildcards.source} "
        "--stats {output.stats} 2>&1 | tee {log}"


rule curate:
    input:
        tables=expand("data/interim/{source}/{table}", source=SOURCES, table=TABLES),
        code=stage_code("curate"),
    output:
        expand("data/processed/{table}", table=TABLES),
        stats="metrics/curate.json",
    params:
        sources=config["sources"],
        curate=config["curate"],
    log:
        "logs/curate.log",
    shell:
        "counseltune curate --interim-dir data/interim --out-dir data/processed --stats {output.stats} 2>&1 | tee {log}"


rule report_data:
    input:
        tables=expand("data/processed/{table}", table=TABLES),
        stats=expand("metrics/ingest/{source}.json", source=SOURCES),
        code=stage_code("report-data"),
    output:
        DATA_REPORT,
    params:
        sources=config["sources"],
        curate=config["curate"],
    log:
        "logs/report_data.log",
    shell:
        "counseltune report-data --ingest-stats metrics/ingest --processed-dir data/processed "
        "--out data/processed/report.md --figures data/processed/figures 2>&1 | tee {log}"
