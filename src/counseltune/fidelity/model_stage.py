"""The fidelity stage of one model: embedded MITI coder, LLM judge, simulated sessions (CTRS) and crisis safety.

Reads the model's base/fine-tuned predictions, the curated tables (dialog histories), the coder of the
miti-coder stage (and its validation numbers), and the model's base folder + adapter for the parts that
talk to the model. Writes its tables to out_dir and every number to one metrics JSON (a DVC metric).
A part switched off in params, or one that cannot run, is listed under not_possible with the reason; a
judge that answers with invalid JSON is counted under failures, never fatal.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from counseltune.fidelity.embedded_coder.coded_replies import CODER_LANGUAGES, coded_items, paired_indicators, variant_profiles
from counseltune.fidelity.embedded_coder.coder import MitiCoder, load_coder
from counseltune.fidelity.embedded_coder.coder_stage import not_coded
from counseltune.fidelity.crisis_safety.crisis_check import balanced_probes, check_variants
from counseltune.fidelity.judges.ctrs import judge_ctrs
from counseltune.fidelity.judges.judged_sessions import judge_predictions
from counseltune.fidelity.crisis_safety.safety import load_probes
from counseltune.fidelity.judges.sessions import sessions_from_tables
from counseltune.fidelity.simulated_client.simulate import SimulationSettings, simulate
from counseltune.fidelity.simulated_client.simulated_sessions import coded_session_turns, intake_profiles, simulation_summary
from counseltune.fidelity.stage_clients import StageClients
from counseltune.schemas.fidelity import CodedReplies, CtrsItems, Failures, JudgeCodes, JudgeGlobals, SafetyVerdicts
from counseltune.schemas.tables import VARIANTS, CuratedDialogs, Dialogs, Predictions, Turns
from counseltune.tables.io import empty_table, read_table
from counseltune.tables.staged import StagedOutputs

FAILURE_COLUMNS = {"part": pl.String, "variant": pl.String, "key": pl.String, "reason": pl.String, "detail": pl.String}
# out_dir/<name>.parquet -> its contract; the stage writes all of them (empty when a part did not run) or none
TABLES = {"coded": CodedReplies, "judge_codes": JudgeCodes, "judge_globals": JudgeGlobals,
          "sessions_dialogs": Dialogs, "sessions_turns": Turns, "ctrs": CtrsItems, "safety": SafetyVerdicts,
          "failures": Failures}


@dataclass
class Run:
    """What every part of the stage reads, and what they add up: tables, failures, what was not possible, timings."""

    cfg: dict
    coder: MitiCoder
    predictions: dict[str, pl.DataFrame]
    dialogs: pl.DataFrame
    turns: pl.DataFrame
    clients: StageClients
    out_dir: Path
    out: StagedOutputs
    failures: list[pl.DataFrame] = field(default_factory=list)
    not_possible: list[dict[str, str]] = field(default_factory=list)
    wall_s: dict[str, float] = field(default_factory=dict)

    def skip(self, what: str, why: str) -> None:
        self.not_possible.append({"what": what, "why": why})

    def write(self, name: str, table: pl.DataFrame) -> None:
        """Stage out_dir/<name>.parquet, validated against its contract (a part that did not run: no rows)."""
        model = TABLES[name]
        self.out.table(self.out_dir / f"{name}.parquet", table if table.width else empty_table(model), model)


def run_model_fidelity(params: dict, model: str, predictions_dir: Path, processed_dir: Path, coder_path: Path,
                       base_dir: Path, adapter_dir: Path, out_dir: Path, metrics_out: Path, *,
                       coder_metrics: Path | None = None, judge_validation: Path | None = None) -> dict:
    """Every fidelity measurement of `model`; tables to out_dir, the metrics JSON to metrics_out (also returned).

    judge_validation: the judge_validation stage's JSON, copied in so every judge number is read beside its
    agreement with human codes (None: reported as not measured).
    """
    started = time.perf_counter()
    cfg = params["fidelity"]
    coder = load_coder(coder_path)   # first: a wrong coder file fails before any model is loaded
    predictions = read_predictions(Path(predictions_dir), model)
    dialogs = read_table(Path(processed_dir) / "dialogs.parquet", CuratedDialogs)
    turns = read_table(Path(processed_dir) / "turns.parquet", Turns)
    if cfg["simulate"]["enabled"] or cfg["safety"]["enabled"]:
        check_adapter(Path(adapter_dir))
    metrics_out = Path(metrics_out)
    with StagedOutputs([*(Path(out_dir) / f"{name}.parquet" for name in TABLES), metrics_out]) as out:
        clients = StageClients(params, model, base_dir, adapter_dir)
        try:
            summary = _measure(Run(cfg, coder, predictions, dialogs, turns, clients, Path(out_dir), out), model,
                               coder_path, coder_metrics, judge_validation, started)
        finally:
            clients.close()  # a model server a served counselor started
        out.json(metrics_out, summary)
    return summary


def _measure(run: Run, model: str, coder_path: Path, coder_metrics: Path | None, judge_validation: Path | None,
             started: float) -> dict:
    """Run every part, stage its tables; the metrics summary."""
    cfg = run.cfg
    summary = {
        "model": model,
        "coder": coder_summary(coder_path, coder_metrics),
        "judge_validation": judge_validation_summary(judge_validation),
        "embedded_coder": _timed(run, "embedded_coder", embedded_part),
        "judge": _timed(run, "judge", judge_part),
        "simulation": _timed(run, "simulate", simulation_part),
        "safety": _timed(run, "safety", safety_part),
    }
    failures = pl.concat(run.failures) if run.failures else pl.DataFrame(schema=FAILURE_COLUMNS)
    run.write("failures", failures)
    summary |= {
        "failures": _count_failures(failures),
        "usage": run.clients.usage(),
        "not_possible": run.not_possible,
        "settings": {k: cfg[k] for k in ("judge", "simulate", "safety", "bootstrap_samples", "seed")},
        "wall_s": {**run.wall_s, "total": round(time.perf_counter() - started, 2)},
    }
    return summary


def embedded_part(run: Run) -> dict:
    """a. The embedded coder on every reply and on the human reply of the same item."""
    n_samples, seed = run.cfg["bootstrap_samples"], run.cfg["seed"]
    coded, skipped = coded_items(run.coder, run.turns, run.predictions)
    run.write("coded", coded)
    if any(skipped.values()):
        run.skip("embedded MITI coding of non-English replies",
                 f"the coder was trained on English AnnoMI; replies not coded, per variant and language: {skipped}")
    run.skip("embedded coding of " + ", ".join(not_coded()["miti_codes"]) + " and of the global scores",
             "AnnoMI has no labels for them (coder.not_coded.why); global scores come from the LLM judge")
    paired = paired_indicators(coded, n_samples, seed)
    # a held-out dialog of the curated split may be one the coder was trained on: its reference codes are optimistic
    seen = set(run.coder.train_dialogs)
    in_training = sorted({d for d in (coded["dialog_id"] if coded.height else []) if d in seen})
    return {"languages": list(CODER_LANGUAGES), "skipped_by_language": skipped, "dialogs_in_coder_training": in_training,
            "variants": variant_profiles(coded, n_samples, seed), "paired": paired,
            "test": next((r["test"] for r in paired.values()), None)}


def judge_part(run: Run) -> dict | None:
    """b. The LLM judge codes and rates the prediction sessions of both variants."""
    cfg = run.cfg["judge"]
    judgements, summary = {}, None
    if cfg["enabled"]:
        judgements, summary = judge_predictions(run.clients.judge, run.dialogs, run.turns, run.predictions, cfg,
                                                run.cfg["bootstrap_samples"], run.cfg["seed"])
        run.failures += [_failures("judge_miti", v, j.failures, "dialog_id") for v, j in judgements.items()]
    else:
        run.skip("LLM judge (MITI codes and global scores)", "fidelity.judge.enabled is false")
    for name, attribute in (("judge_codes", "codes"), ("judge_globals", "globals")):
        frames = [getattr(j, attribute).with_columns(variant=pl.lit(v)) for v, j in judgements.items()]
        run.write(name, pl.concat(frames) if frames else pl.DataFrame())
    return summary


def simulation_part(run: Run) -> dict | None:
    """c. The fine-tuned counselor in session with a simulated client; CTRS by the judge, MITI by the coder."""
    cfg, judge_cfg = run.cfg["simulate"], run.cfg["judge"]
    dialogs, turns, ctrs_items, summary = empty_table(Dialogs), empty_table(Turns), pl.DataFrame(), None
    if cfg["enabled"]:
        profiles = intake_profiles(cfg, run.dialogs, run.turns)
        simulation = simulate(run.clients.counselor, run.clients.simulated_client, profiles,
                              simulation_settings(cfg, run.clients))
        dialogs, turns = simulation.dialogs, simulation.turns
        run.failures.append(_failures("simulate", "finetuned", simulation.failures.rename({"profile_id": "key"})))
        ctrs = None
        if judge_cfg["enabled"]:
            ctrs = judge_ctrs(run.clients.judge, sessions_from_tables(dialogs, turns), seed=judge_cfg["seed"],
                              max_reasks=judge_cfg["max_reasks"], max_tokens=judge_cfg["ctrs_max_tokens"],
                              competence_total=judge_cfg["ctrs_competence_total"])
            ctrs_items = ctrs.items
            run.failures.append(_failures("ctrs", "finetuned", ctrs.failures, "dialog_id"))
        else:
            run.skip("CTRS of the simulated sessions", "needs the LLM judge (fidelity.judge.enabled is false)")
        summary = simulation_summary(simulation, coded_session_turns(run.coder, simulation), ctrs,
                                     judge_cfg["ctrs_competence_total"], run.cfg["bootstrap_samples"], run.cfg["seed"])
        summary["profiles"] = len(profiles)
    else:
        run.skip("simulated sessions (CTRS)", "fidelity.simulate.enabled is false")
    run.write("sessions_dialogs", dialogs)
    run.write("sessions_turns", turns)
    run.write("ctrs", ctrs_items)
    return summary


def simulation_settings(cfg: dict, clients: StageClients) -> SimulationSettings:
    """fidelity.simulate, with the counselor decoding by its registry settings (models.<m>.decode), as predict does."""
    return SimulationSettings(rounds=cfg["rounds"], seed=cfg["seed"], counselor_decode=clients.decode,
                              client_max_tokens=cfg["client_max_tokens"], client_temperature=cfg["client_temperature"],
                              counselor_name=clients.model)


def safety_part(run: Run) -> dict | None:
    """d. Crisis probes answered by the fine-tuned model and its base, rated by the judge."""
    cfg, judge_cfg = run.cfg["safety"], run.cfg["judge"]
    rows, summary = pl.DataFrame(), None
    if not cfg["enabled"]:
        run.skip("crisis safety", "fidelity.safety.enabled is false")
    elif not judge_cfg["enabled"]:
        run.skip("crisis safety", "the verdicts need the LLM judge (fidelity.judge.enabled is false)")
    else:
        probes = balanced_probes(load_probes(), cfg["limit"])
        counselors = {"finetuned": run.clients.counselor, "base": run.clients.base_counselor}
        rows, summary = check_variants(counselors, run.clients.judge, probes, cfg, judge_cfg["seed"],
                                       judge_cfg["max_reasks"], run.clients.model, run.clients.decode)
        failed = rows.filter(pl.col("failure").is_not_null())
        run.failures.append(_failures("safety", None, failed.select("variant", key="probe_id", reason="failure",
                                                                    detail=pl.lit(""))))
    run.write("safety", rows)
    return summary


def read_predictions(predictions_dir: Path, model: str) -> dict[str, pl.DataFrame]:
    """variant -> its predictions table (validated); a clear error naming the missing file."""
    out = {}
    for variant in VARIANTS:
        path = predictions_dir / f"{variant}.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"no {variant} predictions of {model} at {path}: run the predict stages first")
        out[variant] = read_table(path, Predictions)
    return out


def check_adapter(adapter_dir: Path) -> None:
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"the fine-tuned counselor needs a peft adapter folder, got {adapter_dir} (no "
                                "adapter_config.json): run the finetune stage first, or disable fidelity.simulate and "
                                "fidelity.safety")


def coder_summary(coder_path: Path, coder_metrics: Path | None) -> dict:
    """The coder used, with its held-out validation copied from the miti-coder stage's metrics when given."""
    out = {"path": str(coder_path), "not_coded": not_coded(), "validation": None}
    if coder_metrics is not None:
        validation = json.loads(Path(coder_metrics).read_text(encoding="utf-8"))["validation"]
        out["validation"] = {"n_train_transcripts": len(validation["train_dialogs"]),
                             "n_test_transcripts": len(validation["test_dialogs"]),
                             **{k: validation[k] for k in ("seed", "test_fraction", "n_test_turns", "agreement")}}
    return out


def judge_validation_summary(path: Path | None) -> dict | None:
    """The judge's agreement with human codes (judge_validation stage), without its usage and timing."""
    if path is None:
        return None
    validation = json.loads(Path(path).read_text(encoding="utf-8"))
    return {k: v for k, v in validation.items() if k not in ("usage", "wall_s")}


def _timed(run: Run, name: str, part) -> dict | None:
    started = time.perf_counter()
    result = part(run)
    run.wall_s[name] = round(time.perf_counter() - started, 2)
    return result


def _failures(part: str, variant: str | None, frame: pl.DataFrame, key: str = "key") -> pl.DataFrame:
    """A part's failures in the shared layout: part, variant, key, reason, detail."""
    if "variant" not in frame.columns:
        frame = frame.with_columns(variant=pl.lit(variant, pl.String))
    return frame.select(part=pl.lit(part), variant="variant", key=key, reason="reason", detail="detail").cast(FAILURE_COLUMNS)


def _count_failures(failures: pl.DataFrame) -> dict[str, dict[str, int]]:
    """part -> reason -> count."""
    out: dict[str, dict[str, int]] = {}
    for part, reason, n in failures.group_by("part", "reason").len().sort("part", "reason").iter_rows():
        out.setdefault(part, {})[reason] = int(n)
    return out
