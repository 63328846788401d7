"""Measure: the share of judge, CTRS and safety tasks the embedded models answer schema-valid (local backend).

The real judge functions (fidelity.judge.judge_miti, fidelity.ctrs.judge_ctrs, fidelity.safety.evaluate_safety)
run with the model as judge through counseltune.llm's local client, at params.yaml's fidelity.judge /
fidelity.safety token caps and re-ask count, on the bundled AnnoMI sample's sessions (cut to their first
--turns utterances, as long as the default run's prediction and simulated sessions) and the packaged crisis
probes. A task counts as valid when ask_json returned its validated object; failures are listed by reason.

  python benchmarks/validity_structured.py --models smollm2-135m-instruct --sessions 4 --out benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import ensure_model, machine, write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.fidelity.conftest: AnnoMI sample -> canonical tables


def log(message: str) -> None:
    print(f"validity_structured: {message}", file=sys.stderr, flush=True)


def sample_sessions(n: int, turns: int):
    from counseltune.fidelity.judges.sessions import Session, sessions_from_tables
    from tests.fidelity.conftest import SAMPLE, annomi_tables

    dialogs, table = annomi_tables(SAMPLE)
    sessions = [Session(s.dialog_id, s.language, s.turns[:turns]) for s in sessions_from_tables(dialogs, table)]
    return [s for s in sessions if s.counselor_turns][:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct"])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--probes-per-language", type=int, default=1)
    parser.add_argument("--tasks", nargs="+", choices=("miti", "ctrs", "safety"), default=["miti", "ctrs", "safety"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()

    from counseltune.config import load_params
    from counseltune.fidelity.judges.ctrs import judge_ctrs
    from counseltune.fidelity.judges.judge import judge_miti
    from counseltune.fidelity.crisis_safety.safety import evaluate_safety, load_probes
    from counseltune.llm import make_client

    params = load_params(ROOT / "params.yaml")
    judge_cfg, safety_cfg = params["fidelity"]["judge"], params["fidelity"]["safety"]
    sessions = sample_sessions(args.sessions, args.turns)
    per_language: Counter = Counter()
    probes = []
    for probe in load_probes():
        if per_language[probe.language] < args.probes_per_language:
            per_language[probe.language] += 1
            probes.append(probe)
    rows = []
    for name in args.models:
        model_dir = ensure_model(name, None, params, log)
        with tempfile.TemporaryDirectory() as cache:  # a cold cache: every answer is decoded now
            client = make_client({"backend": "local", "model": name, "model_dir": str(model_dir), "cache_dir": cache,
                                  "batch_size": params["llm"]["local"]["batch_size"]})
            started = time.perf_counter()
            kwargs = {"seed": judge_cfg["seed"], "max_reasks": judge_cfg["max_reasks"]}
            results = []
            if "miti" in args.tasks:
                miti = judge_miti(client, sessions, max_tokens=judge_cfg["miti_max_tokens"], **kwargs).outcome
                results.append(("MITI judge", len(miti.answers), len(miti.ok), miti.failures))
            if "ctrs" in args.tasks:
                ctrs = judge_ctrs(client, sessions, max_tokens=judge_cfg["ctrs_max_tokens"], **kwargs).outcome
                results.append(("CTRS", len(ctrs.answers), len(ctrs.ok), ctrs.failures))
            if "safety" in args.tasks:
                safety = evaluate_safety(client, client, probes, answer_max_tokens=safety_cfg["answer_max_tokens"],
                                         judge_max_tokens=safety_cfg["judge_max_tokens"], **kwargs)
                failures = safety.rows.filter(safety.rows["failure"].is_not_null())["failure"].to_list()
                results.append(("safety judge", len(probes), safety.rated.height, dict(Counter(failures))))
                for row in safety.rows.iter_rows(named=True):
                    log(f"{row['probe_id']} ({row['language']}): {row['failure'] or 'rated'}")
            elapsed = time.perf_counter() - started
        for task, total, ok, reasons in results:
            rows.append(f"| {name} | {task} | {total} | {ok} | {ok / total:.0%} | "
                        f"{', '.join(f'{k}: {v}' for k, v in sorted(reasons.items())) or '-'} |")
            log(rows[-1])
        log(f"{name}: {elapsed:.0f} s")
    info = machine("torch", "transformers", "llguidance")
    command = "python benchmarks/validity_structured.py " + shlex.join(sys.argv[1:])
    section = f"""<!-- validity_structured:start -->
## Structured outputs: schema-valid judge answers from the embedded models

`{command}` on {info['date']} ({info['cpu']}, {info['nproc']} cores). Local backend, constrained decoding
(llguidance), params.yaml caps: miti_max_tokens {judge_cfg['miti_max_tokens']}, ctrs_max_tokens
{judge_cfg['ctrs_max_tokens']}, safety judge_max_tokens {safety_cfg['judge_max_tokens']}, max_reasks
{judge_cfg['max_reasks']}; {len(sessions)} AnnoMI sample sessions cut to {args.turns} utterances, {len(probes)} crisis
probes. Before structured outputs every one of these tasks failed (invalid or truncated JSON, 0% valid).

| judge model | task | tasks | schema-valid | share | failures |
| --- | --- | ---: | ---: | ---: | --- |
{chr(10).join(rows)}
<!-- validity_structured:end -->
"""
    write_section(args.out, section, "validity_structured")
    print(section)


if __name__ == "__main__":
    main()
