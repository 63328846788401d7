"""`counseltune <stage> ...`: one sub-command per pipeline stage, argument parsing only.

Snakemake rules and DVC stages call these commands with explicit input and output paths; every stage
re-reads and validates params.yaml, so both engines see the same knobs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from counseltune.config import DEFAULT_PARAMS, ParamsError, load_params

EPILOG = "Run from the project root. See README.md for the pipeline; params.yaml documents every knob."


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except (ParamsError, *_stage_errors()) as err:
        print(f"counseltune {args.stage}: error: {err}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="counseltune", description="Reproducible pipeline for MI/CBT counseling language models.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(title="stages", metavar="<stage>")

    p = _stage(sub, "check-params", "validate params.yaml against schemas/params.schema.yaml", _check_params)

    p = _stage(sub, "ingest", "read one source's raw files into validated dialogs/turns/quarantine tables", _ingest,
               "Writes OUT_DIR/{dialogs,turns,quarantine}.parquet and the STATS json (records in/kept/merged/"
               "quarantined). Fails (exit 1) when the "
               "source's quarantined share is above max_quarantine_share, naming the files and top reasons.")
    p.add_argument("--source", required=True, help="source name, a key under sources: in params.yaml")
    p.add_argument("--raw", required=True, type=Path, help="folder holding the source's raw files (sources.<name>.path)")
    p.add_argument("--out-dir", required=True, type=Path, help="where the tables go, e.g. data/interim/<source>")
    p.add_argument("--stats", required=True, type=Path, help="ingest stats JSON, e.g. metrics/ingest/<source>.json")

    p = _stage(sub, "curate", "merge sources, filter, deduplicate, and split train/val/test by dialog", _curate,
               "Reads INTERIM_DIR/<source>/ for every source in params.yaml; writes OUT_DIR/{dialogs,turns,"
               "quarantine}.parquet (the quarantine gathers the ingest rows too) and the STATS json. Dropped dialogs go to the quarantine with a reason.")
    p.add_argument("--interim-dir", required=True, type=Path, help="folder with one sub-folder per ingested source")
    p.add_argument("--out-dir", required=True, type=Path, help="e.g. data/processed")
    p.add_argument("--stats", required=True, type=Path, help="curation stats JSON, e.g. metrics/curate.json")

    p = _stage(sub, "report-data", "write the data report (Markdown + HTML + PNG plots) of the curated tables",
               _report_data)
    p.add_argument("--ingest-stats", required=True, type=Path, help="folder of per-source ingest stats, e.g. metrics/ingest")
    p.add_argument("--processed-dir", required=True, type=Path, help="curated tables")
    p.add_argument("--out", required=True, type=Path, help="the Markdown report; the HTML goes beside it")
    p.add_argument("--figures", required=True, type=Path, help="folder for the PNG plots")

    p = _stage(sub, "make-sample", "copy a small, attributed sample of the raw corpora (maintainers only)", _make_sample,
               "Rebuilds data/sample/ from the full raw corpora deterministically; the embedded default runs on it.")
    p.add_argument("--raw-root", required=True, type=Path, help="folder with CPsyCounD/, CPsyCounE/, AnnoMI/, KMI_prerelease/")
    p.add_argument("--out", required=True, type=Path, help="e.g. data/sample")
    return parser


def _stage(sub, name: str, summary: str, run, details: str = "") -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=summary, description=f"{summary}. {details}".strip(), epilog=EPILOG)
    p.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="params file (default: params.yaml)")
    p.set_defaults(run=run, stage=name)
    return p


def _check_params(args) -> int:
    load_params(args.params)
    print(f"{args.params}: valid")
    return 0


def _ingest(args) -> int:
    from counseltune.ingest.run import ingest_source

    stats = ingest_source(load_params(args.params), args.source, args.raw, args.out_dir, args.stats)
    print(
        f"ingest[{args.source}]: {stats.stats['records_in']} {stats.stats['unit']}s -> {stats.stats['dialogs']} dialogs, "
        f"{stats.stats['turns']} turns, {stats.stats['quarantined']} quarantined, merged {stats.stats['merged']}"
    )
    return 0


def _curate(args) -> int:
    from counseltune.curate.run import curate

    stats = curate(load_params(args.params), args.interim_dir, args.out_dir, args.stats)
    print(f"curate: {stats['dialogs_in']} dialogs -> {stats['dialogs_kept']} kept; dropped {stats['dropped']}; splits {stats['per_split']}")
    return 0


def _report_data(args) -> int:
    from counseltune.report.data_report import write_data_report

    write_data_report(load_params(args.params), args.ingest_stats, args.processed_dir, args.out, args.figures)
    print(f"report-data: wrote {args.out}")
    return 0


def _make_sample(args) -> int:
    from counseltune.sample import make_sample

    make_sample(args.raw_root, args.out)
    return 0


def _stage_errors() -> tuple[type[Exception], ...]:
    from counseltune.ingest.base import IngestError
    from counseltune.tables.io import TableError

    return (IngestError, TableError)


if __name__ == "__main__":
    sys.exit(main())
