"""Every run model's metrics and scores -> reports/comparison/report.{md,html} in the papers' table layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from counseltune.report.comparison_stats import write_comparison_tables
from counseltune.report.document import Document, Image, Paragraph, Section, Table
from counseltune.report.fidelity import between_models_section, comparison_sections
from counseltune.report.metrics import METRIC_LABELS, convention_note, paired_cell
from counseltune.report.plots import bars_with_ci
from counseltune.report.provenance import provenance
from counseltune.report.spend import SpendTable, read_spend, spend_table
from counseltune.report.synthesis import SynthesisRow, synthesis_rows
from counseltune.schemas.fidelity import CodedReplies
from counseltune.schemas.scores import ITEM_METRICS, IndicatorComparisons, ScoreComparisons, Scores
from counseltune.tables.io import read_table

TABLE_METRICS = ["bleu4", "rouge1", "rouge2", "rougeL", "distinct1", "distinct2", "length_chars"]


def write_comparison(params: dict[str, Any], eval_dir: Path, scores_dir: Path, out_dir: Path,
                     params_path: Path = Path("params.yaml"), fidelity_dir: Path | None = None,
                     coder_metrics: Path | None = None, fidelity_tables: Path | None = None,
                     spend_dir: Path | None = None, synthesize_dir: Path | None = None,
                     sft_dir: Path | None = None) -> None:
    """fidelity_dir: per-model fidelity metrics (<model>.json); coder_metrics: the miti-coder stage's JSON (its
    validation and the real-MI reference rows). Either adds the fidelity section. fidelity_tables: the fidelity
    stages' folders (<model>/coded.parquet), for the between-model tests on the same items. synthesize_dir: the
    synthesize stats of synthesize.run's generators (<generator>.json), with sft_dir (<model>.json) for their mix."""
    models = params["run"]["models"]
    evaluations = {m: json.loads((eval_dir / f"{m}.json").read_text(encoding="utf-8")) for m in models}
    scores = {m: read_table(scores_dir / f"{m}.parquet", Scores) for m in models}
    coded = None
    if fidelity_tables is not None:
        coded = {m: read_table(fidelity_tables / m / "coded.parquet", CodedReplies) for m in models
                 if (fidelity_tables / m / "coded.parquet").exists()}
    # the statistics come from report-compare's own tables (comparison_stats); this module only renders them
    tables = write_comparison_tables(out_dir, scores, params["evaluate"], coded, params["fidelity"])
    languages = sorted({lang for e in evaluations.values() for lang in e["languages"]})
    figures = out_dir / "figures"
    sections = [Section("About", [
        Paragraph("Each fine-tuned model next to its un-tuned base, on the same held-out counselor turns. "
                  "Research artifact: automatic overlap metrics, not clinical quality."),
        Paragraph(convention_note(next(iter(evaluations.values())))),
    ])]
    for lang in languages:
        sections.append(_language_section(lang, evaluations, figures, out_dir))
    sections.append(_between_models(read_table(tables["scores"], ScoreComparisons), params["evaluate"]))
    if fidelity_dir is not None or coder_metrics is not None:
        fidelity = {m: _read_json(fidelity_dir / f"{m}.json") for m in models} if fidelity_dir is not None else {}
        sections += comparison_sections(fidelity, _read_json(coder_metrics) if coder_metrics else None, figures, out_dir)
    if "indicators" in tables:
        sections.append(between_models_section(read_table(tables["indicators"], IndicatorComparisons)))
    if synthesize_dir is not None:  # the synthesize stage's counts (report/synthesis.py)
        rows = synthesis_rows(params["synthesize"]["run"], synthesize_dir, sft_dir, models)
        sections.append(synthesis_section(rows, models))
    if spend_dir is not None:  # the LLM stages' spend tables (llm/spend.py)
        sections.append(spend_section(spend_table(read_spend(spend_dir))))
    record = run_provenance(models, eval_dir, scores_dir, params_path, [p for p in (fidelity_dir, coder_metrics) if p])
    sections.append(_provenance_section(record))
    doc = Document("counseltune: model comparison", sections)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "provenance.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(doc.to_markdown(), encoding="utf-8")
    (out_dir / "report.html").write_text(doc.to_html(), encoding="utf-8")


def run_provenance(models: list[str], eval_dir: Path, scores_dir: Path, params_path: Path,
                   extra: list[Path] = ()) -> dict[str, Any]:
    """Provenance of this comparison: its declared inputs, plus the curated tables and adapters when present."""
    inputs = [params_path, eval_dir, scores_dir, *extra, Path("data/processed/dialogs.parquet"),
              Path("data/processed/turns.parquet"), *[Path("models/adapters") / m for m in models]]
    return provenance(Path.cwd(), params_path, inputs)


def _provenance_section(record: dict[str, Any]) -> Section:
    git, hw = record["git"], record["hardware"]
    commit = f"{git['commit'] or 'not a git checkout'}{' (uncommitted changes)' if git['dirty'] else ''}"
    rows = [["git commit", commit], ["params sha256", record["params"]["sha256"]],
            ["hardware", f"{hw['cpus']} CPUs ({hw['cpu']}), {hw['ram_gib']} GiB RAM, GPUs: {', '.join(hw['gpus']) or 'none'}"],
            ["packages", ", ".join(f"{k} {v}" for k, v in record["packages"].items() if v)],
            *[[f"sha256 {path}", digest] for path, digest in record["inputs"].items()]]
    return Section("Provenance", [
        Paragraph("Code, params, data and environment this report was computed from (also in provenance.json; "
                  "a DVC run adds every stage's output hashes from dvc.lock)."),
        Table(["what", "value"], rows),
    ])


def _language_section(lang: str, evaluations: dict[str, dict], figures: Path, out_dir: Path) -> Section:
    rows, bars = [], {}
    for model, evaluation in evaluations.items():
        block = evaluation["languages"].get(lang)
        if block is None:
            continue
        for variant in ("base", "finetuned"):
            values = block["variants"][variant]
            rows.append([f"{model} ({'fine-tuned' if variant == 'finetuned' else 'base'})",
                         *[_point(values.get(m)) for m in TABLE_METRICS], block["n_items"]])
            bars[f"{model} {variant}"] = [_triple(values[m]) for m in ("bleu4", "rougeL")]
    path = bars_with_ci(["BLEU-4", "ROUGE-L"], bars, "score", figures / f"comparison_{lang}.png",
                        title=f"{lang}: mean with 95% bootstrap CI")
    return Section(f"{lang}", [
        Table(["model", *[METRIC_LABELS[m] for m in TABLE_METRICS], "items"], rows),
        Image(path.relative_to(out_dir).as_posix(), f"comparison {lang}"),
    ])


def spend_section(table: SpendTable) -> Section:
    if not table.rows:
        return Section("LLM spend", [Paragraph("No paid LLM requests in this run (a local backend costs nothing).")])
    money = lambda usd: f"${usd:.4f}"  # noqa: E731
    share = lambda s: "-" if s is None else f"{s:.1%}"  # noqa: E731
    budget = "-" if table.budget_usd is None else money(table.budget_usd)
    rows = [[r.stage, r.model, r.requests, r.tokens_in, r.tokens_out, money(r.usd), budget, share(r.share)]
            for r in (*table.rows, table.total)]
    return Section("LLM spend", [
        Table(["stage", "model", "requests", "tokens in", "tokens out", "USD", "budget", "share of budget"], rows),
        Paragraph("Every answered request the run paid for (retries and re-runs included), from the run's spend "
                  "ledger as each LLM stage left it; the budget (llm.remote.budget_usd) caps the whole run."),
    ])


def synthesis_section(rows: list[SynthesisRow], models: list[str]) -> Section:
    if not rows:
        return Section("Synthetic sessions", [Paragraph("No synthesis in this run (synthesize.run is empty).")])
    percent = lambda x: "-" if x is None else f"{x:.1%}"  # noqa: E731

    def mixed(row: SynthesisRow) -> str:
        cells = {m: "-" if mix is None else f"{mix.dialogs} ({percent(mix.share)} of {mix.sft_dialogs})"
                 for m, mix in row.mix.items()}
        if len(set(cells.values())) == 1:  # the mix is the same for every model unless their sft stats differ
            return next(iter(cells.values()))
        return "; ".join(f"{m}: {c}" for m, c in cells.items())

    table = [[r.generator, r.language, r.requested, r.attempted, r.accepted, r.quarantined, percent(r.acceptance_rate),
              r.rounds, r.stop_reason or "-", mixed(r)] for r in rows]
    details = [f"{r.generator} stopped on {r.stop_reason}: {r.stop_detail}" for r in rows if r.stop_detail]
    return Section("Synthetic sessions", [
        Table(["generator", "language", "requested", "attempted", "accepted", "quarantined", "acceptance", "rounds",
               "stop reason", "in SFT data (share of its dialogs)"], table),
        Paragraph("requested: synthesize.generators.<g>.n_sessions (accepted sessions wanted); rejected sessions are "
                  "quarantined and replaced in further rounds, bounded by synthesize.attempts and the budget. In SFT "
                  "data: the accepted sessions sft.synthetic mixes into each model's training data (sft-data stats; "
                  f"- where not available), over all its SFT dialogs. Models: {', '.join(models)}."),
        *[Paragraph(d) for d in details],
    ])


def _between_models(comparisons: pl.DataFrame, evaluate: dict[str, Any]) -> Section:
    """comparisons: report-compare's ScoreComparisons table, rows in the order the tests were run."""
    results = {(r["model_a"], r["model_b"], r["language"], r["metric"]): r for r in comparisons.iter_rows(named=True)}
    if not results:
        return Section("Between models", [Paragraph("Only one model in this run: no between-model comparison.")])
    rows = [[f"{a} − {b}", lang, METRIC_LABELS.get(metric, metric), paired_cell(r), r.get("n", ""),
             r.get("n_dialogs", "")] for (a, b, lang, metric), r in sorted(results.items())]
    test = next((r["test"] for r in results.values() if r.get("test")), None)
    tested = sum(r.get("p_value") is not None for r in results.values())
    note = (f"Test: {test}. Multiple comparisons: p-values are Holm-adjusted across every model pair, language and "
            f"metric tested in this table ({tested} comparisons); per-item metrics: {', '.join(ITEM_METRICS)}."
            if test else "")
    if tested < len(results):
        note += (f" {len(results) - tested} comparisons not tested (greyed): fewer than "
                 f"{evaluate['min_dialogs_for_inference']} shared dialogs.")
    return Section("Between models (fine-tuned, same items)", [
        Table(["difference", "language", "metric", "difference (p, Holm)", "items", "dialogs"], rows),
        Paragraph(note.strip()),
    ])


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _point(ci: dict[str, float] | None) -> str:
    return "-" if not ci else f"{ci['estimate']:.3f}"


def _triple(ci: dict[str, float | None]) -> tuple[float, float, float]:
    """No whisker for an interval that was not computed (too few dialogs)."""
    low, high = ci.get("low"), ci.get("high")
    return ci["estimate"], ci["estimate"] if low is None else low, ci["estimate"] if high is None else high
