"""params.synthesize + data/processed -> one generator's synthetic sessions as canonical tables + metadata.

    out_dir/dialogs.parquet      accepted sessions (CuratedDialogs; split=train, source=synthetic:<generator>)
    out_dir/turns.parquet        their turns, with the planned MI code / client talk type on each turn
    out_dir/quarantine.parquet   failed requests and filtered sessions, with reasons
    out_dir/generation.json      backend, model, prompt versions, seed, counts, acceptance rate, usage
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from counseltune.config import ParamsError
from counseltune.llm.types import Client
from counseltune.schemas.tables import CuratedDialogs, Quarantine, Turns
from counseltune.synthesize import records
from counseltune.synthesize.filters import (
    FilterConfig,
    check_session,
    duplicates,
    schema_failures,
)
from counseltune.synthesize.generate import (
    NEEDS_PLANNER,
    Generation,
    Settings,
    generate,
    make_generator,
)
from counseltune.synthesize.planner import Planner, fit
from counseltune.synthesize.seeds import load_seeds, select_seeds
from counseltune.tables.io import read_table, write_table

# keys of synthesize.generators.<name> that steer the run rather than the requests (Settings holds the rest)
RUN_KEYS = {"n_sessions", "seed", "seed_sources", "opening_turns", "filters"}  # (unknown keys are refused)
PLANNER_DEFAULTS = {"sources": ["annomi"], "k": 0.5, "min_context_count": 3}


def synthesize(params: dict[str, Any], generator: str, processed_dir: Path, out_dir: Path, client: Client, *,
               planner: Planner | None = None, planner_path: Path | None = None,
               metrics_path: Path | None = None) -> dict[str, Any]:
    """Generate, filter and write one generator's sessions; return the generation stats.

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
    seed = int(spec.get("seed", cfg.get("seed", 0)))

    dialogs = read_table(Path(processed_dir) / "dialogs.parquet", CuratedDialogs)
    turns = read_table(Path(processed_dir) / "turns.parquet", Turns)
    pool = load_seeds(dialogs, turns, settings.language, spec.get("seed_sources"), spec.get("opening_turns", 2))
    chosen = select_seeds(pool, int(spec["n_sessions"]), seed)
    if generator in NEEDS_PLANNER and planner is None:
        planner = Planner.load(planner_path) if planner_path else fit_planner(cfg.get("planner", {}), dialogs, turns)

    writer = make_generator(generator, settings, planner)
    result = generate(writer, chosen, client, seed)
    run_meta = {"backend": client.backend, "model": client.model, "generator": generator, "seed": seed,
                "prompt_version": "+".join(writer.prompt_versions)}
    dialogs_out, turns_out, quarantine, verdict_stats = _filter_and_build(result, chosen, settings, filter_cfg, run_meta, out_dir)

    out_dir = Path(out_dir)
    write_table(dialogs_out, out_dir / "dialogs.parquet", CuratedDialogs)
    write_table(turns_out, out_dir / "turns.parquet", Turns)
    write_table(quarantine, out_dir / "quarantine.parquet", Quarantine)
    stats = {
        **run_meta, "method": settings.method, "language": settings.language,
        "settings": dataclasses.asdict(settings), "filters": dataclasses.asdict(filter_cfg),
        "seed_pool": len(pool), "n_requested": len(result.sessions), "rounds": result.rounds,
        **verdict_stats, "n_accepted": dialogs_out.height, "turns_accepted": turns_out.height,
        "acceptance_rate": round(dialogs_out.height / len(result.sessions), 6) if result.sessions else 0.0,
        "usage": dataclasses.asdict(client.usage),
        "planner": planner.fitted_on if planner is not None and generator in NEEDS_PLANNER else None,
    }
    stats = json.loads(json.dumps(stats))  # return exactly what the JSON file says (tuples become lists)
    _write_json(out_dir / "generation.json", stats)
    if metrics_path is not None:
        _write_json(Path(metrics_path), stats)
    return stats


def _filter_and_build(result: Generation, chosen, settings: Settings, cfg: FilterConfig, run_meta: dict[str, Any], out_dir: Path):
    """Failures, per-session checks, duplicates and the schema, in that order; every reject is a quarantine row."""
    quarantined: list[dict[str, Any]] = []
    failed = Counter()
    survivors, verdicts = [], {}
    for session in result.sessions:
        if session.failure is not None:
            failed[session.failure[0]] += 1
            quarantined.append(records.quarantine_row(session, *session.failure))
            continue
        verdict = check_session(session.turns, settings.language, cfg)
        verdicts[session.dialog_id] = verdict
        if verdict.accepted:
            survivors.append(session)
        else:
            quarantined.append(records.quarantine_row(session, verdict.reason, verdict.detail))

    dupes = duplicates([s.dialog_id for s in survivors], ["\n".join(t.text for t in s.turns) for s in survivors], chosen, cfg)
    kept = [s for s in survivors if s.dialog_id not in dupes]
    quarantined += [records.quarantine_row(s, *dupes[s.dialog_id]) for s in survivors if s.dialog_id in dupes]

    def row(session):
        verdict = verdicts[session.dialog_id]
        extra = {"plan_adherence": verdict.plan_adherence, "language_share": round(verdict.language_share, 4)}
        return records.dialog_row(session, settings.method, settings.language, run_meta, extra)

    dialogs_out, turns_out, _ = records.tables([row(s) for s in kept], [r for s in kept for r in records.turn_rows(s)], [])
    broken = schema_failures(dialogs_out, turns_out, str(out_dir))
    if broken:
        quarantined += [records.quarantine_row(s, "schema", broken[s.dialog_id]) for s in kept if s.dialog_id in broken]
        kept = [s for s in kept if s.dialog_id not in broken]
        dialogs_out, turns_out, _ = records.tables([row(s) for s in kept], [r for s in kept for r in records.turn_rows(s)], [])
    quarantine = records.frame(quarantined, Quarantine)

    generated = list(verdicts.values())
    adherence = [v.plan_adherence for v in generated if v.plan_adherence is not None]
    stats = {
        "n_generated": len(generated),
        "n_failed": dict(failed.most_common()),
        "quarantine_reasons": dict(Counter(quarantine["reason"].to_list()).most_common()),
        "n_quarantined": quarantine.height,
        "mean_plan_adherence": round(sum(adherence) / len(adherence), 6) if adherence else None,
        "mean_language_share": round(sum(v.language_share for v in generated) / len(generated), 6) if generated else None,
    }
    return dialogs_out, turns_out, quarantine, stats


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
