"""One model's training, data and evaluation results -> reports/<model>/report.{md,html} + figures/*.png."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import polars as pl

from counseltune.report.document import Document, Image, Paragraph, Section, Table
from counseltune.report.fidelity import model_sections
from counseltune.report.metrics import METRIC_LABELS, ci_cell, convention_note, paired_cell
from counseltune.report.plots import bars_with_ci, histograms, lines
from counseltune.report.spend import SpendTable, spend_table

CAVEAT = ("Research artifact. These numbers compare generated replies with reference counselor turns; they do not "
          "measure clinical quality or safety. No model here is a substitute for a licensed clinician, and none is fit "
          "for crisis situations.")


def write_model_report(params: dict[str, Any], model: str, train_path: Path, live_dir: Path, sft_path: Path,
                       eval_path: Path, scores_path: Path, out_dir: Path, fidelity: Path | None = None,
                       spend: Path | None = None) -> None:
    """fidelity: the model's fidelity metrics (run_model_fidelity's JSON); adds its sections when given. spend: its
    fidelity job's spend table (llm/spend.py); adds a line with what this model's stages cost."""
    train = json.loads(train_path.read_text(encoding="utf-8"))
    sft = json.loads(sft_path.read_text(encoding="utf-8"))
    evaluation = json.loads(eval_path.read_text(encoding="utf-8"))
    scores = pl.read_parquet(scores_path)
    figures = out_dir / "figures"
    doc = Document(f"{model}: fine-tuned vs base", [
        Section("Summary", [Paragraph(CAVEAT), Paragraph(convention_note(evaluation)), _summary_table(evaluation)]),
        Section("Training", _training_blocks(train, live_dir, figures, out_dir)),
        Section("SFT data", [_flat_table(sft)]),
        *[_language_section(lang, block, figures, out_dir) for lang, block in sorted(evaluation["languages"].items())],
        Section("Reply lengths", [_lengths_plot(scores, figures, out_dir)]),
        Section("Examples", [_examples(scores)]),
        *(model_sections(json.loads(fidelity.read_text(encoding="utf-8")), figures, out_dir) if fidelity else []),
        *([Section("LLM spend", [Paragraph(spend_line(
            spend_table([json.loads(spend.read_text(encoding="utf-8"))], f"fidelity[{model}]")))])] if spend else []),
        Section("Params", [Paragraph(f"models.{model}: " + json.dumps(params["models"][model], ensure_ascii=False,
                                                                        sort_keys=True))]),
    ])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(doc.to_markdown(), encoding="utf-8")
    (out_dir / "report.html").write_text(doc.to_html(), encoding="utf-8")


def spend_line(table: SpendTable) -> str:
    """One line: what each of this model's stages paid, and the total against the run's budget."""
    if not table.rows:
        return "This model's stages paid for no LLM requests."
    parts = [f"{r.stage} ({r.model}): {r.requests:,} requests, {r.tokens_in:,} tokens in / {r.tokens_out:,} out, "
             f"${r.usd:.4f}" for r in table.rows]
    share = "" if table.total.share is None else f", {table.total.share:.1%} of the ${table.budget_usd:.2f} budget"
    return "LLM spend of this model's stages: " + "; ".join(parts) + f"; total ${table.total.usd:.4f}{share}."


def _summary_table(evaluation: dict[str, Any]) -> Table:
    rows = []
    for lang, block in sorted(evaluation["languages"].items()):
        for metric in ("bleu4", "rougeL"):
            paired = block.get("paired", {}).get(metric, {})
            rows.append([lang, METRIC_LABELS[metric], ci_cell(block["variants"]["base"][metric]),
                         ci_cell(block["variants"]["finetuned"][metric]), paired_cell(paired), block["n_items"],
                         block.get("n_dialogs", "")])
    return Table(["language", "metric", "base", "fine-tuned", "fine-tuned − base (p, Holm)", "items", "dialogs"], rows)


def _training_blocks(train: dict[str, Any], live_dir: Path, figures: Path, out_dir: Path) -> list:
    blocks: list = [_flat_table(train)]
    curves = _loss_curves(live_dir)
    if curves:
        path = lines(curves, "step", "loss", figures / "loss.png")
        blocks.append(Image(path.relative_to(out_dir).as_posix(), "training loss"))
    else:
        blocks.append(Paragraph("No per-step loss was logged."))
    return blocks


def _loss_curves(live_dir: Path) -> dict[str, tuple[list[float], list[float]]]:
    """dvclive writes one TSV per metric (plots/metrics/<name>.tsv: timestamp, step, value)."""
    curves = {}
    for tsv in sorted(live_dir.rglob("*.tsv")):
        if "loss" not in tsv.stem:
            continue
        with tsv.open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if rows:
            value = [k for k in rows[0] if k not in ("timestamp", "step")][0]
            curves[tsv.relative_to(live_dir).with_suffix("").as_posix().split("metrics/", 1)[-1]] = (
                [float(r["step"]) for r in rows], [float(r[value]) for r in rows])
    return curves


def _language_section(lang: str, block: dict[str, Any], figures: Path, out_dir: Path) -> Section:
    metrics = list(block["variants"]["base"])
    rows = [[METRIC_LABELS.get(m, m), ci_cell(block["variants"]["base"][m]), ci_cell(block["variants"]["finetuned"][m]),
             paired_cell(block.get("paired", {}).get(m, {}))] for m in metrics]
    bounded = [m for m in metrics if m != "length_chars"]
    series = {variant: [_triple(block["variants"][variant][m]) for m in bounded] for variant in ("base", "finetuned")}
    path = bars_with_ci([METRIC_LABELS.get(m, m) for m in bounded], series, "score", figures / f"metrics_{lang}.png",
                        title=f"{lang}: mean with 95% bootstrap CI")
    test = next((p.get("test") for p in block.get("paired", {}).values() if p.get("test")), None)
    greyed = [r for r in (*block["variants"]["base"].values(), *block.get("paired", {}).values())
              if r.get("no_interval") or r.get("no_test")]
    inference = (f"Paired comparisons on the same items: {test}; p-values Holm-adjusted across all metrics and "
                 "languages of this report." if test else "")
    if greyed:
        reasons = sorted({r.get("no_interval") or r.get("no_test") for r in greyed})
        inference += (f" Not reported ({'; '.join(reasons)}): with so few dialogs a bootstrap interval or a test "
                      "says nothing; only the point estimates are shown.")
    dialogs = block.get("n_dialogs", "?")
    return Section(f"Scores: {lang} ({block['n_items']} items, {dialogs} dialog{'' if dialogs == 1 else 's'})", [
        Table(["metric", "base", "fine-tuned", "fine-tuned − base (p, Holm)"], rows),
        Paragraph(inference.strip()),
        Image(path.relative_to(out_dir).as_posix(), f"metrics {lang}"),
    ])


def _lengths_plot(scores: pl.DataFrame, figures: Path, out_dir: Path) -> Image:
    series = {f"{v} replies": scores.filter(pl.col("variant") == v)["length_chars"].to_list()
              for v in sorted(scores["variant"].unique())}
    series["references"] = scores.filter(pl.col("variant") == "base")["ref_length_chars"].to_list()
    path = histograms(series, "characters per reply", figures / "lengths.png")
    return Image(path.relative_to(out_dir).as_posix(), "reply lengths")


def _examples(scores: pl.DataFrame, n: int = 3) -> Table:
    wide = (scores.select("dialog_id", "turn_index", "language", "variant", "hypothesis", "reference")
            .pivot(on="variant", index=["dialog_id", "turn_index", "language", "reference"], values="hypothesis")
            .sort("dialog_id", "turn_index"))
    picked = wide.group_by("language", maintain_order=True).head(n)
    rows = [[r["dialog_id"], r["reference"][:160], (r.get("base") or "")[:160], (r.get("finetuned") or "")[:160]]
            for r in picked.iter_rows(named=True)]
    return Table(["dialog", "reference", "base", "fine-tuned"], rows)


def _flat_table(data: dict[str, Any]) -> Table:
    rows = [[k, json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v] for k, v in sorted(data.items())]
    return Table(["key", "value"], rows)


def _triple(ci: dict[str, float | None]) -> tuple[float, float, float]:
    """No whisker for an interval that was not computed (too few dialogs)."""
    low, high = ci.get("low"), ci.get("high")
    return ci["estimate"], ci["estimate"] if low is None else low, ci["estimate"] if high is None else high
