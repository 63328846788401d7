"""Fidelity sections of the reports: MITI by the embedded coder (with its validation beside it), the LLM judge's
global scores, CTRS of simulated sessions, crisis safety; per model and across models (with real-MI references)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from counseltune.instruments.miti import GLOBAL_SCORES, SCORE_LABELS, TOTALS
from counseltune.report.document import Alert, Image, Paragraph, Section, Table
from counseltune.report.plots import bars_with_ci, miti_scatter

VARIANT_LABELS = {"base": "base", "finetuned": "fine-tuned", "reference": "human reference replies"}
SHARES = ("question", "reflection", "therapist_input", "other")
FAMILY_LABELS = {"behavior": "behavior (4 classes)", "question_subtype": "open/closed question",
                 "reflection_subtype": "simple/complex reflection", "code": "end-to-end code"}


# ---- cells -----------------------------------------------------------------------------------------
def score_cell(score: dict | None) -> str:
    """estimate [low, high] (MITI grade), or '-' where the score could not be computed."""
    if not score or score.get("estimate") is None:
        return "-"
    grade = f" ({score['grade'].replace('_', ' ')})" if score.get("grade") else ""
    return f"{score['estimate']:.2f} [{score['low']:.2f}, {score['high']:.2f}]{grade}"


def share_cell(share: dict | None) -> str:
    if not share or share.get("estimate") is None:
        return "-"
    return f"{share['estimate']:.0%} [{share['low']:.0%}, {share['high']:.0%}]"


def graded_cell(entry: dict | None) -> str:
    """A judge summary score {value, grade}."""
    if not entry or entry.get("value") is None:
        return "-"
    return f"{entry['value']:.2f}" + (f" ({entry['grade'].replace('_', ' ')})" if entry.get("grade") else "")


def total_cell(entry: dict | None) -> str:
    """A MITI total: the count over the coded sessions and its mean per session."""
    if not entry or entry.get("value") is None:
        return "-"
    mean = entry.get("per_session")
    return f"{entry['value']:.0f}" + ("" if mean is None else f" ({mean:.2f} per session)")


def rate_cell(summary: dict | None) -> object:
    """A safe-handling rate; an Alert (red in HTML) when it is flagged."""
    if not summary:
        return "-"
    if summary["safe_rate"] is None:
        return Alert("not rated")
    text = f"{summary['safe_rate']:.0%}"
    return Alert(f"{text} (< {summary['threshold']:.0%})") if summary["flagged"] else text


# ---- shared blocks -----------------------------------------------------------------------------------
def validation_note(agreement: dict[str, dict], n_transcripts: int) -> Paragraph:
    """'coder validated at kappa .. / macro-F1 .. on N held-out AnnoMI transcripts', per label family."""
    parts = [f"{FAMILY_LABELS.get(f, f)} kappa {_num(a.get('kappa'))} / macro-F1 {_num(a.get('macro_f1'))}"
             for f, a in agreement.items() if f != "code"]
    return Paragraph(f"Embedded MITI coder validated on {n_transcripts} held-out AnnoMI transcripts "
                     f"({agreement['behavior']['n']} counselor utterances) against the human codes: "
                     + "; ".join(parts) + ". Subtype decisions (and so %CR) are the weakest: read them as indicative.")


def profile_row(label: str, profile: dict) -> list[object]:
    scores, shares = profile["scores"], profile["shares"]
    return [label, profile.get("n_items", profile["n_coded"]), profile["n_dialogs"],
            score_cell(scores["reflection_to_question"]), score_cell(scores["percent_complex_reflection"]),
            *[share_cell(shares.get(s)) for s in SHARES]]


PROFILE_HEADER = ["", "utterances", "dialogs", "R:Q [95% CI] (grade)", "%CR [95% CI] (grade)",
                  *[f"{s.replace('_', ' ')} share" for s in SHARES]]


def scatter_points(profiles: dict[str, dict]) -> dict[str, tuple[float, float]]:
    """label -> (R:Q, %CR) for the profiles where both exist."""
    points = {}
    for label, profile in profiles.items():
        rq, cr = (profile["scores"][k]["estimate"] for k in ("reflection_to_question", "percent_complex_reflection"))
        if rq is not None and cr is not None:
            points[label] = (rq, cr)
    return points


def scatter_image(profiles: dict[str, dict], figures: Path, out_dir: Path, name: str) -> list:
    points = scatter_points(profiles)
    if not points:
        return [Paragraph("No row has both an R:Q and a %CR (no questions or no reflections coded): nothing to plot.")]
    path = miti_scatter(points, figures / name, title="MITI: R:Q vs % complex reflections")
    missing = sorted(set(profiles) - set(points))
    note = [Paragraph(f"Not plotted (R:Q or %CR undefined): {', '.join(missing)}.")] if missing else []
    return [Image(path.relative_to(out_dir).as_posix(), "R:Q vs %CR with MITI thresholds"), *note]


# ---- the judge's agreement with human codes (judge_validation stage) -------------------------------------
NO_VALIDATION = "agreement not measured: no judge validation"
NO_HUMAN_CODE = "agreement not measured: AnnoMI has no human {what}"
# judge summary score -> the behaviors whose codes it is built from (compared with human codes)
JUDGED_FROM = {"reflection_to_question": ("question", "reflection"),
               "percent_complex_reflection": ("simple_reflection", "complex_reflection")}


def kappa_text(validation: dict | None, behavior: str) -> str:
    """'kappa 0.41 vs human, n=37' for one behavior, or why there is no such number."""
    if not validation or not validation.get("measured"):
        why = (validation or {}).get("why")
        return NO_VALIDATION + (f" ({why})" if why else "")
    if not validation["judged_utterances"]:
        reasons = ", ".join(f"{n} {r}" for r, n in validation["failures_by_reason"].items()) or "no failure"
        return (f"agreement not measured: the judge coded no held-out utterance ({validation['failed']} of "
                f"{validation['sessions']} transcripts failed: {reasons})")
    result = validation["behaviors"].get(behavior)
    if result is None or result["n"] == 0:
        return f"agreement not measured: no held-out utterance the judge coded has a human {behavior} code"
    if result["kappa"] is None:
        return f"kappa undefined vs human (one label throughout), n={result['n']}"
    return f"kappa {result['kappa']:.2f} vs human, n={result['n']}"


def agreement_cell(validation: dict | None, score: str) -> str:
    """The agreement behind one judge number: a global score, a summary score or a total."""
    if not validation or not validation.get("measured"):
        return kappa_text(validation, "")
    if score in GLOBAL_SCORES or score in ("technical", "relational"):
        return NO_HUMAN_CODE.format(what="global scores")
    if score in TOTALS:
        return NO_HUMAN_CODE.format(what="SC/AF/EA/CON/PER codes")
    return "; ".join(f"{b.replace('_', ' ')} {kappa_text(validation, b)}" for b in JUDGED_FROM[score])


def judge_validation_blocks(validation: dict | None) -> list:
    """The judge's agreement per behavior as a table, or one line saying it was not measured."""
    if not validation or not validation.get("measured"):
        why = (validation or {}).get("why")
        return [Paragraph("Judge agreement with human codes: not measured (no judge validation"
                          + (f": {why}" if why else "") + "). Read every judge number below as unvalidated.")]
    rows = [[b.replace("_", " "), _num(r["kappa"]), r["n"], r["human_count"], r["judge_count"]]
            for b, r in validation["behaviors"].items()]
    return [
        Table(["behavior", "Cohen's kappa (judge vs human)", "utterances", "human count", "judge count"], rows),
        Paragraph(f"Judge validation: {validation['judge_model']} coded {validation['judged']} of "
                  f"{validation['sessions']} held-out AnnoMI transcripts ({validation['judged_utterances']} of "
                  f"{validation['human_coded_utterances']} human-coded counselor utterances) with the prompts it uses "
                  f"here. {validation['globals']['why']}; AnnoMI's codes have no "
                  + ", ".join(c.replace("_", " ") for c in validation["not_compared"]["codes"])
                  + ", so those counts are not validated either."),
    ]


# ---- the per-model report --------------------------------------------------------------------------
def model_sections(fidelity: dict[str, Any], figures: Path, out_dir: Path) -> list[Section]:
    validation = fidelity.get("judge_validation")
    return [_embedded_section(fidelity, figures, out_dir),
            _judge_section(fidelity.get("judge"), validation, figures, out_dir),
            _simulation_section(fidelity.get("simulation")), _safety_section(fidelity.get("safety"), figures, out_dir),
            _limits_section(fidelity)]


def _embedded_section(fidelity: dict, figures: Path, out_dir: Path) -> Section:
    embedded, coder = fidelity["embedded_coder"], fidelity["coder"]
    validation = coder.get("validation")
    blocks: list = [validation_note(validation["agreement"], validation["n_test_transcripts"]) if validation else
                    Paragraph("The coder's validation numbers were not passed to this stage: see metrics/fidelity/coder.json.")]
    profiles = {VARIANT_LABELS[v]: p for v, p in embedded["variants"].items()}
    if not profiles:
        blocks.append(Paragraph(f"No reply in a language the coder knows ({', '.join(embedded['languages'])}): "
                                "nothing was coded."))
        return Section("Fidelity: MITI behavior (embedded coder)", blocks)
    blocks += [
        Table(PROFILE_HEADER, [profile_row(label, p) for label, p in profiles.items()]),
        Paragraph("Pooled over the coded replies; 95% percentile bootstrap CIs resample dialogs. Grades against MITI "
                  "4.2.1 thresholds (R:Q fair 1:1, good 2:1; %CR fair 40%, good 50%). Shares are of the coded "
                  "utterances. Not coded by this coder: "
                  + ", ".join(coder["not_coded"]["miti_codes"]) + f" (no AnnoMI label); languages coded: "
                  f"{', '.join(embedded['languages'])}."
                  + (f" The coder was trained on {len(embedded['dialogs_in_coder_training'])} of these dialogs, so "
                     "its codes of their human replies are optimistic." if embedded["dialogs_in_coder_training"] else "")),
        *scatter_image(profiles, figures, out_dir, "fidelity_miti.png"),
    ]
    if embedded["paired"]:
        rows = [[name.replace("is_", "").replace("_", " "), f"{r['finetuned']:.0%}", f"{r['base']:.0%}",
                 f"{r['difference']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]", f"{r['p_value']:.3g}",
                 f"{r['p_holm']:.3g}", _num(r["cohens_d"]), _num(r["rank_biserial"]), r["n"]]
                for name, r in embedded["paired"].items()]
        blocks += [Table(["behavior", "fine-tuned", "base", "difference [95% CI]", "p", "p (Holm)", "Cohen's d",
                          "rank-biserial r", "items"], rows),
                   Paragraph(f"Fine-tuned vs base on the same items, per behavior indicator (1 if the reply is "
                             f"coded so): {embedded['test']}; p-values Holm-adjusted across the "
                             f"{len(rows)} indicators.")]
    return Section("Fidelity: MITI behavior (embedded coder)", blocks)


JUDGE_GRADED = ("technical", "relational", "reflection_to_question")


def _judge_section(judge: dict | None, validation: dict | None, figures: Path, out_dir: Path) -> Section:
    title = "Fidelity: LLM judge (MITI global scores)"
    if judge is None:
        return Section(title, [Paragraph("The LLM judge was not run (fidelity.judge.enabled is false).")])
    rows, bars = [], {}
    for variant, v in judge["variants"].items():
        globals_, summary = v["globals"], v["summary"]
        rows.append([VARIANT_LABELS[variant], f"{v['judged']} of {v['sessions']}", v["failed"],
                     *[score_cell(globals_[g]) for g in GLOBAL_SCORES],
                     *[graded_cell(summary.get(k)) for k in JUDGE_GRADED],
                     *[total_cell(summary.get(t)) for t in TOTALS], graded_cell(summary.get("mia_share"))])
        if all(globals_[g]["estimate"] is not None for g in GLOBAL_SCORES):
            bars[VARIANT_LABELS[variant]] = [(globals_[g]["estimate"], globals_[g]["low"], globals_[g]["high"])
                                             for g in GLOBAL_SCORES]
    # every judge number beside its agreement with human codes (one row under the numbers, per column)
    rows.append(["agreement vs human", "-", "-", *[agreement_cell(validation, k) for k in (*GLOBAL_SCORES, *JUDGE_GRADED)],
                 *[agreement_cell(validation, t) for t in TOTALS], agreement_cell(validation, "total_mi_adherent")])
    blocks: list = [
        Table(["", "sessions judged", "failed", *[g.replace("_", " ") for g in GLOBAL_SCORES], "technical",
               "relational", "R:Q (judge)", *[SCORE_LABELS[t] for t in TOTALS], SCORE_LABELS["mia_share"]], rows),
        Paragraph(f"Judge: {judge['model']}. Global scores 1-5 (mean over sessions, 95% bootstrap CI); technical = mean "
                  f"of the first two, relational of the last two (MITI fair 3 / 3.5, good 4). MITI 4.2.1 totals are "
                  "counts over the judged model turns, with their mean per session; they have no thresholds. The MIA "
                  "share MIA/(MIA+MINA) is an older MITI's score, shown only for comparison with such studies. "
                  f"Caveat: {judge['caveat']}. "
                  "A failed session (invalid JSON after the re-asks, or the client gave up) is counted, never scored."),
        *judge_validation_blocks(validation),
    ]
    if bars:
        path = bars_with_ci([g.replace("_", " ") for g in GLOBAL_SCORES], bars, "score (1-5)",
                            figures / "fidelity_globals.png", title="MITI global scores (LLM judge)")
        blocks.append(Image(path.relative_to(out_dir).as_posix(), "global-score profile"))
    else:
        blocks.append(Paragraph("No variant has every global score rated: no profile to plot."))
    return Section(title, blocks)


def _simulation_section(simulation: dict | None) -> Section:
    title = "Fidelity: simulated sessions (CTRS)"
    if simulation is None:
        return Section(title, [Paragraph("No simulated sessions (fidelity.simulate.enabled is false).")])
    blocks: list = [Paragraph(f"{simulation['sessions']} sessions of the fine-tuned counselor with a simulated client "
                              f"({simulation['failed']} dropped on a failed request; "
                              f"{_num(simulation['turns_per_session'])} turns per session).")]
    ctrs = simulation.get("ctrs")
    if ctrs is None:
        blocks.append(Paragraph("CTRS not rated: it needs the LLM judge."))
    else:
        items = [[item.replace("_", " "), f"{score:.2f}"] for item, score in ctrs["mean_item"].items()]
        total = "-" if ctrs["mean_total"] is None else f"{ctrs['mean_total']:.1f} of {ctrs['total_max']}"
        blocks += [Table(["CTRS item (0-6)", "mean"], items + [["total", total]]),
                   Paragraph(f"{ctrs['judged']} of {ctrs['sessions']} sessions rated ({ctrs['failed']} failed); "
                             f"{ctrs['competent_sessions']} reach the competence total of {ctrs['competence_total']}. "
                             "Judge's CTRS: agreement not measured (no human CTRS ratings of these sessions).")]
    if simulation.get("miti_coder"):
        blocks += [Table(PROFILE_HEADER, [profile_row("simulated counselor turns", simulation["miti_coder"])])]
    return Section(title, blocks)


def _safety_section(safety: dict | None, figures: Path, out_dir: Path) -> Section:
    title = "Fidelity: crisis safety"
    if safety is None:
        return Section(title, [Paragraph("Crisis probes were not run (disabled, or no judge to rate them).")])
    rows = [[VARIANT_LABELS[v], s["probes"], s["rated"], s["failed"], rate_cell(s),
             "-" if s["precheck_rate"] is None else f"{s['precheck_rate']:.0%}", s["precheck_disagreements"]]
            for v, s in safety.items()]
    rated = {VARIANT_LABELS[v]: [(s["safe_rate"],) * 3] for v, s in safety.items() if s["safe_rate"] is not None}
    blocks: list = [
        Table(["", "probes", "rated", "failed", "safe-handling rate", "names a resource (rules)",
               "rules vs judge disagree"], rows),
        Paragraph(f"Safe-handling rate = probes the judge rated safe / probes rated; flagged below "
                  f"{next(iter(safety.values()))['threshold']:.0%}. The rule-based pre-check only looks for a named "
                  "hotline, emergency service or professional: necessary, not sufficient. Judge's verdicts: agreement "
                  "not measured (no human-rated crisis replies)."),
    ]
    if rated:
        path = bars_with_ci(["safe-handling rate"], rated, "share of rated probes", figures / "fidelity_safety.png")
        blocks.append(Image(path.relative_to(out_dir).as_posix(), "safe-handling rate"))
    return Section(title, blocks)


def _limits_section(fidelity: dict) -> Section:
    rows = [[entry["what"], entry["why"]] for entry in fidelity["not_possible"]]
    failures = [[part, reason, n] for part, reasons in fidelity["failures"].items() for reason, n in reasons.items()]
    usage = [[role, u["model"], u["requests"], u["cache_hits"], u["tokens_in"], u["tokens_out"], f"{u['cost_usd']:.4f}"]
             for role, u in fidelity["usage"].items()]
    blocks: list = [Table(["not measured", "why"], rows)]
    if failures:
        blocks.append(Table(["part", "failure", "count"], failures))
    if usage:
        blocks.append(Table(["LLM client", "model", "requests", "cache hits", "tokens in", "tokens out", "USD"], usage))
    return Section("Fidelity: limits, failures and LLM usage", blocks)


# ---- the comparison report ---------------------------------------------------------------------------
def comparison_sections(fidelity: dict[str, dict], coder: dict | None, figures: Path, out_dir: Path) -> list[Section]:
    """One table (and one scatter) of every model's base and fine-tuned MITI profile next to real MI."""
    profiles, rows = {}, []
    for model, f in fidelity.items():
        for variant in ("finetuned", "base"):
            profile = f["embedded_coder"]["variants"].get(variant)
            label = f"{model} ({VARIANT_LABELS[variant]})"
            judge = ((f.get("judge") or {}).get("variants") or {}).get(variant, {}).get("summary", {})
            ctrs = (f.get("simulation") or {}).get("ctrs") if variant == "finetuned" else None
            rows.append([*(profile_row(label, profile) if profile else [label, 0, 0, "-", "-", *["-"] * len(SHARES)]),
                         graded_cell(judge.get("technical")), graded_cell(judge.get("relational")),
                         _num(ctrs["mean_total"]) if ctrs else "-", rate_cell((f.get("safety") or {}).get(variant))])
            if profile:
                profiles[label] = profile
    for quality, codings in (coder or {}).get("reference", {}).items():
        for coding, profile in codings.items():
            label = f"real MI, {quality} quality ({'coder' if coding == 'coder' else 'human'} codes)"
            rows.append([*profile_row(label, profile), "-", "-", "-", "-"])
            profiles[label] = profile
    blocks: list = []
    if coder:
        validation = coder["validation"]
        blocks.append(validation_note(validation["agreement"], len(validation["test_dialogs"])))
    blocks += [
        Table([*PROFILE_HEADER, "technical (judge)", "relational (judge)", "CTRS total", "safe-handling rate"], rows),
        Paragraph("Judge columns (technical, relational, CTRS, safe-handling): agreement with humans not measured; "
                  "AnnoMI has no human global scores, CTRS ratings or crisis verdicts (see each model's report for the "
                  "judge's kappa on the behavior codes)."),
        Paragraph("Model rows: the embedded coder on each model's replies to the held-out turns (English only). "
                  "Real-MI rows: AnnoMI's held-out transcripts by MI quality, coded by the same coder and by AnnoMI's "
                  "human annotators; where the two differ, the coder's bias shows. CIs resample dialogs."),
        *scatter_image(profiles, figures, out_dir, "fidelity_comparison.png"),
    ]
    return [Section("Fidelity across models (MITI, judge, CTRS, safety)", blocks)]


def between_models_section(comparisons: pl.DataFrame) -> Section:
    """Fine-tuned models against each other on the behavior indicators of the same held-out items (report-compare's
    IndicatorComparisons table, rows in the order the tests were run)."""
    results = {(r["model_a"], r["model_b"], r["indicator"]): r for r in comparisons.iter_rows(named=True)}
    if not results:
        return Section("Fidelity between models", [Paragraph(
            "No two models have coded replies to the same items (one model, or no English items): no comparison.")])
    rows = [[f"{a} − {b}", name, f"{_num(r['difference'])} [{_num(r['low'])}, {_num(r['high'])}]",
             f"{r['p_value']:.3g}", f"{r['p_holm']:.3g}", _num(r["cohens_d"]), _num(r["rank_biserial"]), r["n"]]
            for (a, b, name), r in sorted(results.items())]
    test = next(iter(results.values()))["test"]
    return Section("Fidelity between models (fine-tuned, same items)", [
        Table(["difference", "behavior", "difference [95% CI]", "p", "p (Holm)", "Cohen's d", "rank-biserial",
               "items"], rows),
        Paragraph(f"Per item 0/1 indicators from the embedded coder. Test: {test}. Multiple comparisons: p-values "
                  f"are Holm-adjusted across every model pair and behavior in this table ({len(rows)} comparisons)."),
    ])


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
