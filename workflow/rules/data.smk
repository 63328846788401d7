# Data stages: ingest (one job per source), curate, data report. Thin wiring around `counseltune <stage>`.
# group "data": under a cluster executor the whole data DAG (seconds of work in 6+ jobs) is one cluster job, so
# it pays the scheduler's submit/poll latency once instead of once per level (benchmarks/RESULTS.md, bench_cluster);
# a local run ignores groups.

DATA_REPORT = ["data/processed/report.md", "data/processed/report.html",
               "data/processed/figures/turns_per_dialog.png", "data/processed/figures/utterance_length.png"]


rule ingest:
    group: "data"
    input:
        raw=raw_files,
        code=ingest_code,
    output:
        expand("data/interim/{{source}}/{table}", table=TABLES),
        stats="metrics/ingest/{source}.json",
    params:
        declared=declared("ingest", source="source"),  # the keys the stage reads (stage_params.py): a change re-runs it
        raw=lambda wc: config["sources"][wc.source]["path"],
    log:
        "logs/ingest/{source}.log",
    shell:
        "counseltune ingest --source {wildcards.source} --raw {params.raw:q} --out-dir data/interim/{wildcards.source} "
        "--stats {output.stats} 2>&1 | tee {log}"


rule curate:
    group: "data"
    input:
        tables=expand("data/interim/{source}/{table}", source=SOURCES, table=TABLES),
        code=stage_code("curate"),
    output:
        expand("data/processed/{table}", table=TABLES),
        stats="metrics/curate.json",
    params:
        declared=declared("curate"),  # the keys the stage reads (stage_params.py): a change re-runs it
    log:
        "logs/curate.log",
    shell:
        "counseltune curate --interim-dir data/interim --out-dir data/processed --stats {output.stats} 2>&1 | tee {log}"


rule report_data:
    group: "data"
    input:
        tables=expand("data/processed/{table}", table=TABLES),
        stats=expand("metrics/ingest/{source}.json", source=SOURCES),
        code=stage_code("report-data"),
    output:
        DATA_REPORT,
    params:
        declared=declared("report-data"),  # the keys the stage reads (stage_params.py): a change re-runs it
    log:
        "logs/report_data.log",
    shell:
        "counseltune report-data --ingest-stats metrics/ingest --processed-dir data/processed "
        "--out data/processed/report.md --figures data/processed/figures 2>&1 | tee {log}"
