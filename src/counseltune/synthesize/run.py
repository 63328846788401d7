"""params.synthesize + data/processed -> one generator's synthetic sessions as canonical tables + metadata.

    out_dir/dialogs.parquet      accepted sessions (CuratedDialogs; split=train, source=synthetic:<generator>)
    out_dir/turns.parquet        their turns, with the planned MI code / client talk type on each turn
    out_dir/quarantine.parquet   failed requests and filtered sessions, with reasons
    out_dir/generation.json      backend, model, prompt versions, seed, requested / attempted / accepted /
                                 quarantined counts, replacement rounds, stop reason, usage

n_sessions counts accepted sessions: rejected ones are replaced in further rounds (synthesize.attempts).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from counseltune.config import ParamsError
from counseltune.llm.types import Client
from counseltune.schemas.tables import CuratedDialogs, Quarantine, Turns
from counseltune.synthesize import records
from counseltune.synthesize.budget_stop import BUDGET_STOP, StopOnBudget
from counseltune.synthesize.filters import (
    FilterConfig,
    Verdict,
    check_session,
    duplicates,
    schema_failures,
)
from counseltune.synthesize.generate import (
    NEEDS_PLANNER,
    SOURCE_PREFIX,
    Generation,
    Session,
    Settings,
    generate,
    make_generator,
)
from counseltune.synthesize.planner import Planner, fit
from counseltune.synthesize.seeds import load_seeds, select_seeds
from counseltune.tables.io import read_table, write_table

# keys of synthesize.generators.<name> that steer the run rather than the requests (Settings holds the rest)
RUN_KEYS = {"n_sessions", "seed", "seed_sources", "opening_turns", "filters", "attempts"}  # (unknown keys are refused)
PLANNER_DEFAULTS = {"sources": ["annomi"], "k": 0.5, "min_context_count": 3}

# why a run stopped making sessions (generation.json stop_reason)
TARGET_REACHED, ATTEMPT_CAP, SEED_POOL_EXHAUSTED, BUDGET = "target_reached", "attempt_cap", "seed_pool_exhausted", "budget"


@dataclass(frozen=True)
class Attempts:
    """synthesize.attempts (a generator's own `attempts` wins): how far replacement rounds may go."""

    max_factor: float = 3.0             # at most ceil(max_factor x n_sessions) sessions attempted in all
    max_seed_uses: int | None = None    # None: the seed order cycles the pool (each pass counted in the stats)

    @classmethod
    def from_params(cls, spec: dict[str, Any]) -> Attempts:
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise ParamsError(f"unknown synthesize.attempts keys {sorted(unknown)}: expected {sorted(cls.__dataclass_fields__)}")
        attempts = cls(**spec)
        if attempts.max_factor < 1 or (attempts.max_seed_uses is not None and attempts.max_seed_uses < 1):
            raise ParamsError(f"synthesize.attempts needs max_factor >= 1 and max_seed_uses >= 1 (or null), got {spec}")
        return attempts

    def cap(self, n_sessions: int) -> int:
        return math.ceil(self.max_factor * n_sessions - 1e-9)


@dataclass
class Pool:
    """Everything the rounds have produced so far, in attempt order."""

    accepted: list[Session] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    failed: Counter = field(default_factory=Counter)
    unfinished: int = 0
    attempted: int = 0
    llm_rounds: int = 0
    rounds: list[dict[str, int]] = field(default_factory=list)


def synthesize(params: dict[str, Any], generator: str, processed_dir: Path, out_dir: Path, client: Client, *,
               planner: Planner | None = None, planner_path: Path | None = None,
               metrics_path: Path | None = None) -> dict[str, Any]:
    """Generate, filter and write one generator's sessions until n_sessions are accepted; return the stats.

    A round generates the shortfall from the next seeds of a fixed seeded order; rejected sessions are quarantined
    and replaced in the next round, until n_sessions are accepted, the attempt cap or the seed pool is reached, or
    the budget stops the client (then what was accepted is written, and the stop reason is in the stats).
    mi_planned needs a planner: `planner`, else `planner_path` (written by fit_planner_file), else one fitted
    here from the processed train turns of params.synthesize.planner.sources.
    """
    cfg = params["synthesize"]
    if generator not in cfg.get("generators", {}):
        raise ParamsError(f"synthesize.generators has no {generator!r} entry (have "
                          f"{sorted(cfg.get('generators', {}))}): pass one of those, or add it in params.yaml")
    spec = cfg["generators"][generator]
    settings = Settings.from_params({k: v for k, v in spec.items() if k not in RUN_KEYS})
    filter_cfg = FilterConfig.from_params({**cfg.get("filters", {}), **spec.get("filters", {})})
    attempts = Attempts.from_params({**cfg.get("attempts", {}), **spec.get("attempts", {})})
    seed = int(spec.get("seed", cfg.get("seed", 0)))
    n_sessions = int(spec["n_sessions"])

    dialogs = read_table(Path(processed_dir) / "dialogs.parquet", CuratedDialogs)
    turns = read_table(Path(processed_dir) / "turns.parquet", Turns)
    pool = load_seeds(dialogs, turns, settings.language, spec.get("seed_sources"), spec.get("opening_turns", 2))
    cap = attempts.cap(n_sessions)
    usable = cap if attempts.max_seed_uses is None else min(cap, len(pool) * attempts.max_seed_uses)
    order = select_seeds(pool, usable, seed)  # the fixed order every round continues: a re-run asks the same
    if generator in NEEDS_PLANNER and planner is None:
        planner = Planner.load(planner_path) if planner_path else fit_planner(cfg.get("planner", {}), dialogs, turns)

    writer = make_generator(generator, settings, planner)
    run_meta = {"backend": client.backend, "model": client.model, "generator": generator, "seed": seed,
                "prompt_version": "+".join(writer.prompt_versions)}
    guarded = StopOnBudget(client)
    done = Pool()
    while True:
        stop = _stop_reason(done, n_sessions, cap, len(order), guarded)
        if stop is not None:
            break
        batch = order[done.attempted:done.attempted + min(n_sessions - len(done.accepted), cap - done.attempted)]
        result = generate(writer, batch, guarded, _round_seed(seed, len(done.rounds)))
        _number(result.sessions, generator, seed, done.attempted)
        before = len(done.accepted)
        _filter_round(result, order[:done.attempted + len(batch)], settings, filter_cfg, run_meta, out_dir, done)
        done.attempted += len(batch)
        done.llm_rounds += result.rounds
        done.rounds.append({"attempted": len(batch), "accepted": len(done.accepted) - before})

    dialogs_out, turns_out = _tables(done, settings, run_meta)
    quarantine = records.frame(done.quarantined, Quarantine)
    out_dir = Path(out_dir)
    write_table(dialogs_out, out_dir / "dialogs.parquet", CuratedDialogs)
    write_table(turns_out, out_dir / "turns.parquet", Turns)
    write_table(quarantine, out_dir / "quarantine.parquet", Quarantine)
    used = order[:done.attempted]
    stats = {
        **run_meta, "method": settings.method, "language": settings.language,
        "settings": dataclasses.asdict(settings), "filters": dataclasses.asdict(filter_cfg),
        "attempts": dataclasses.asdict(attempts),
        "n_requested": n_sessions, "max_attempts": cap, "n_attempted": done.attempted,
        "n_accepted": dialogs_out.height, "n_quarantined": quarantine.height, "n_unfinished": done.unfinished,
        "stop_reason": stop, "stop_detail": _stop_detail(stop, guarded, n_sessions, cap, len(pool), attempts),
        "attempt_rounds": done.rounds, "rounds": done.llm_rounds,
        "seed_pool": len(pool), "seeds_used": len({s.dialog_id for s in used}),
        "seed_reuses": len(used) - len({s.dialog_id for s in used}),
        **_verdict_stats(done, quarantine), "turns_accepted": turns_out.height,
        "acceptance_rate": round(dialogs_out.height / done.attempted, 6) if done.attempted else 0.0,
        "usage": dataclasses.asdict(client.usage),
        "planner": planner.fitted_on if planner is not None and generator in NEEDS_PLANNER else None,
    }
    stats = json.loads(json.dumps(stats))  # return exactly what the JSON file says (tuples become lists)
    _write_json(out_dir / "generation.json", stats)
    if metrics_path is not None:
        _write_json(Path(metrics_path), stats)
    return stats


def _stop_reason(done: Pool, n_sessions: int, cap: int, usable: int, client: StopOnBudget) -> str | None:
    if len(done.accepted) >= n_sessions:
        return TARGET_REACHED
    if client.stopped is not None:
        return BUDGET
    if done.attempted >= cap:
        return ATTEMPT_CAP
    if done.attempted >= usable:
        return SEED_POOL_EXHAUSTED
    return None


def _stop_detail(stop: str, client: StopOnBudget, n_sessions: int, cap: int, pool: int, attempts: Attempts) -> str:
    if stop == BUDGET:
        return client.stopped or ""
    if stop == ATTEMPT_CAP:
        return (f"{cap} sessions attempted (synthesize.attempts.max_factor {attempts.max_factor} x n_sessions "
                f"{n_sessions}) before {n_sessions} were accepted: see the quarantine reasons, or raise max_factor")
    if stop == SEED_POOL_EXHAUSTED:
        return (f"every one of the {pool} seeds was used {attempts.max_seed_uses} time(s) (synthesize.attempts."
                "max_seed_uses) before n_sessions were accepted: add seed material, or allow more uses per seed")
    return ""


def _round_seed(seed: int, round_index: int) -> int:
    """The first round keeps the run's seed; a replacement round gets its own, so its sessions are new ones."""
    if round_index == 0:
        return seed
    return int(np.random.SeedSequence([seed, round_index]).generate_state(1)[0] & 0x7FFFFFFF)


def _number(sessions: list[Session], generator: str, seed: int, first: int) -> None:
    # generate() numbers each call's sessions from 0: renumber by attempt, so ids are unique across rounds
    for offset, session in enumerate(sessions):
        session.index = first + offset
        session.dialog_id = f"{SOURCE_PREFIX}:{generator}-{seed}-{session.index:05d}"


def _filter_round(result: Generation, seeds_so_far, settings: Settings, cfg: FilterConfig, run_meta: dict[str, Any],
                  out_dir: Path, done: Pool) -> None:
    """Failures, per-session checks, duplicates (against every session accepted so far) and the schema, in that
    order; every reject is a quarantine row, every survivor joins done.accepted."""
    survivors = []
    for session in result.sessions:
        if session.failure is not None:
            reason = session.failure[0]
            if reason == f"llm_{BUDGET_STOP}":
                done.unfinished += 1
            done.failed[reason] += 1
            done.quarantined.append(records.quarantine_row(session, *session.failure))
            continue
        verdict = check_session(session.turns, settings.language, cfg)
        done.verdicts[session.dialog_id] = verdict
        if verdict.accepted:
            survivors.append(session)
        else:
            done.quarantined.append(records.quarantine_row(session, verdict.reason, verdict.detail))

    candidates = done.accepted + survivors  # accepted first: of two near duplicates the earlier one stays
    dupes = duplicates([s.dialog_id for s in candidates], [_text(s) for s in candidates], seeds_so_far, cfg)
    kept = [s for s in survivors if s.dialog_id not in dupes]
    done.quarantined += [records.quarantine_row(s, *dupes[s.dialog_id]) for s in survivors if s.dialog_id in dupes]

    new_dialogs, new_turns = _tables_of(kept, done.verdicts, settings, run_meta)
    broken = schema_failures(new_dialogs, new_turns, str(out_dir))
    done.quarantined += [records.quarantine_row(s, "schema", broken[s.dialog_id]) for s in kept if s.dialog_id in broken]
    done.accepted += [s for s in kept if s.dialog_id not in broken]


def _text(session: Session) -> str:
    return "\n".join(t.text for t in session.turns)


def _tables_of(sessions: list[Session], verdicts: dict[str, Verdict], settings: Settings, run_meta: dict[str, Any]):
    def row(session):
        verdict = verdicts[session.dialog_id]
        extra = {"plan_adherence": verdict.plan_adherence, "language_share": round(verdict.language_share, 4)}
        return records.dialog_row(session, settings.method, settings.language, run_meta, extra)

    dialogs, turns, _ = records.tables([row(s) for s in sessions], [r for s in sessions for r in records.turn_rows(s)], [])
    return dialogs, turns


def _tables(done: Pool, settings: Settings, run_meta: dict[str, Any]):
    return _tables_of(done.accepted, done.verdicts, settings, run_meta)


def _verdict_stats(done: Pool, quarantine: pl.DataFrame) -> dict[str, Any]:
    generated = list(done.verdicts.values())
    adherence = [v.plan_adherence for v in generated if v.plan_adherence is not None]
    return {
        "n_generated": len(generated),
        "n_failed": dict(done.failed.most_common()),
        "quarantine_reasons": dict(Counter(quarantine["reason"].to_list()).most_common()),
        "mean_plan_adherence": round(sum(adherence) / len(adherence), 6) if adherence else None,
        "mean_language_share": round(sum(v.language_share for v in generated) / len(generated), 6) if generated else None,
    }


def fit_planner(spec: dict[str, Any], dialogs: pl.DataFrame, turns: pl.DataFrame) -> Planner:
    """Fit on the train-split turns of the configured sources (synthesize.planner: sources, k, min_context_count)."""
    spec = {**PLANNER_DEFAULTS, **spec}
    train = dialogs.filter((pl.col("split") == "train") & pl.col("source").is_in(spec["sources"]))
    return fit(turns.join(train.select("dialog_id"), on="dialog_id", how="semi"), spec["k"], spec["min_context_count"])


def fit_planner_file(params: dict[str, Any], processed_dir: Path, out_path: Path) -> dict[str, Any]:
    """The planner as its own stage: fit from data/processed and save JSON; returns what it was fitted on."""
    dialogs = read_table(Path(processed_dir) / "dialogs.parquet", CuratedDialogs)
    turns = read_table(Path(processed_dir) / "turns.parquet", Turns)
    planner = fit_planner(params["synthesize"].get("planner", {}), dialogs, turns)
    planner.save(out_path)
    return {"codes": planner.codes, **planner.fitted_on}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
