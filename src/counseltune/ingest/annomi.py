"""AnnoMI CSVs (full: one row per utterance and annotator; simple: one per utterance) -> one ParsedDialog per transcript."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import polars as pl

from counseltune.ingest.base import IngestError, Ledger, ParsedDialog, ParsedTurn, relative
from counseltune.schemas.tables import CLIENT_TALK, MI_BEHAVIORS
from counseltune.text import normalize_text

UNIT = "csv row"
LANGUAGE = "en"

FILES = {"full": "AnnoMI-full.csv", "simple": "AnnoMI-simple.csv"}
ANNOTATOR_RULES = ("majority", "first")
COLUMNS = (
    "transcript_id", "mi_quality", "video_title", "video_url", "topic", "utterance_id", "interlocutor",
    "utterance_text", "main_therapist_behaviour", "client_talk_type",
)
SUBTYPES = {  # main behaviour -> (subtype column of the full file, subtype -> mi_code)
    "question": ("question_subtype", {"open": "open_question", "closed": "closed_question"}),
    "reflection": ("reflection_subtype", {"simple": "simple_reflection", "complex": "complex_reflection"}),
    "therapist_input": ("therapist_input_subtype", {v: v for v in ("information", "advice", "negotiation", "options")}),
}
FULL_COLUMNS = COLUMNS + ("annotator_id",) + tuple(column for column, _ in SUBTYPES.values())
ROLES = {"therapist": "counselor", "client": "client"}
META = ("mi_quality", "topic", "video_title", "video_url")
MI_QUALITIES = ("high", "low")
MISSING = "n/a"
# Texts made only of these characters may be empty after normalize_text; only those are checked with it.
_MAYBE_EMPTY = r"^[\s\p{Cc}\x{200b}\x{200c}\x{200d}\x{2060}\x{feff}]*$"


MULTI_RECORD_FILES = True  # a CSV that breaks off mid-row fails the source unless on_truncated_file: salvage


def read(root: Path, ledger: Ledger, options: dict, on_truncated_file: str = "fail") -> list[ParsedDialog]:
    """root/AnnoMI-<variant>.csv -> one ParsedDialog per transcript; every CSV row is counted in the ledger."""
    variant = options.get("variant", "full")
    rule = options.get("annotator_rule", "majority")
    if variant not in FILES:
        raise IngestError(f"AnnoMI: options.variant must be one of {sorted(FILES)}, got {variant!r}; fix it in params.yaml")
    if rule not in ANNOTATOR_RULES:
        raise IngestError(f"AnnoMI: options.annotator_rule must be one of {list(ANNOTATOR_RULES)}, got {rule!r}; fix it in params.yaml")
    path = Path(root) / FILES[variant]
    if not path.is_file():
        raise IngestError(
            f"AnnoMI {variant} CSV not found at {path}: point sources.<name>.path in params.yaml at the folder "
            f"holding {FILES[variant]}, or set options.variant to the file you have ({sorted(FILES)})"
        )
    name = relative(path, Path(root))
    full = variant == "full"
    if on_truncated_file not in ("fail", "salvage"):
        raise IngestError(f"ingest[{ledger.source}]: on_truncated_file must be fail or salvage, got {on_truncated_file!r}; fix it in params.yaml")
    rows = _load(path, FULL_COLUMNS if full else COLUMNS, ledger, on_truncated_file)
    ledger.seen(rows.height)
    rows = _check(rows, full)
    bad = rows.filter(pl.col("_reason").is_not_null())
    kept = rows.filter(pl.col("_reason").is_null())
    _quarantine(ledger, name, bad)
    turns = _one_per_utterance(kept, full, rule)
    if kept.height > turns.height:
        ledger.merge("extra_annotator_rows", kept.height - turns.height)
    # A quarantined utterance leaves a gap in a kept dialog (base then joins the speaker's turns around it).
    gaps = bad.join(turns.select("_tid", "_uid"), on=["_tid", "_uid"], how="anti")
    gapped = gaps.filter(pl.col("_tid").is_in(turns["_tid"].unique().implode()))["_tid"].n_unique()
    if gapped:
        ledger.note("dialogs_with_quarantined_rows", gapped)
    return _dialogs(turns, _transcript_meta(turns, ledger), name)


def _load(path: Path, required: tuple[str, ...], ledger: Ledger, on_truncated_file: str = "fail") -> pl.DataFrame:
    """The CSV as strings, plus _row (data row index), _line (1-based physical line), _raw (row text) and _bad_utf8."""
    data = path.read_bytes()
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    data = _cut_partial_last_row(data[bom:], bom, path, ledger, on_truncated_file)
    try:
        text, bad_lines = data.decode("utf-8"), {}
    except UnicodeDecodeError:
        # Invalid bytes never hide '"', ',' or '\n', so the lossy text has the same rows and lines.
        text, bad_lines = data.decode("utf-8", errors="replace"), _bad_utf8_lines(data, bom)
    lines = text.split("\n")
    starts = _row_starts(lines)
    header_bad = [offset for k, offset in bad_lines.items() if k < (starts[0] if starts else 1)]
    if header_bad:
        raise IngestError(f"{path}: invalid UTF-8 at byte {header_bad[0]} in the header; re-encode the file as UTF-8")
    try:
        df = pl.read_csv(text.encode() if bad_lines else data, infer_schema=False)
    except pl.exceptions.PolarsError as err:
        raise IngestError(f"{path}: not a readable CSV ({str(err).splitlines()[0]}); fix or re-download the file") from None
    df.columns = [c.lstrip("\ufeff") for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise IngestError(f"{path}: missing required column(s) {missing} (found {df.columns}); is this an AnnoMI CSV of that variant?")
    csv_columns = df.columns
    if starts is not None and len(starts) - 1 == df.height:
        spans = list(zip(starts, starts[1:]))
        raw_bytes = data.split(b"\n") if bad_lines else []
        bad_at = [min((bad_lines[k] for k in range(s, e) if k in bad_lines), default=None) for s, e in spans]
        raws = [
            b"\n".join(raw_bytes[s:e]).decode("utf-8", errors="backslashreplace") if at is not None
            else lines[s] if e - s == 1 else "\n".join(lines[s:e])
            for (s, e), at in zip(spans, bad_at)
        ]
        df = df.with_columns(
            _line=pl.Series([s + 1 for s, _ in spans], dtype=pl.Int64),
            _raw=pl.Series(raws, dtype=pl.String).str.strip_suffix("\r"),
            _bad_utf8=pl.Series(bad_at, dtype=pl.Int64),
        )
    else:
        # Rows could not be matched to physical lines: locations fall back to file#row<index>.
        if bad_lines:
            raise IngestError(f"{path}: invalid UTF-8 at byte {min(bad_lines.values())}; re-encode the file as UTF-8")
        ledger.note("csv_lines_unmapped")
        df = df.with_columns(
            _line=pl.lit(None, pl.Int64), _raw=pl.struct(csv_columns).struct.json_encode(), _bad_utf8=pl.lit(None, pl.Int64),
        )
    df = df.with_row_index("_row")
    blank = pl.all_horizontal(pl.col(c).is_null() for c in csv_columns)  # polars reads a blank line as a row of nulls
    n_blank = df.select(blank.sum()).item()
    if n_blank:
        ledger.note("blank_lines_skipped", n_blank)
        df = df.filter(~blank)
    return df


def _cut_partial_last_row(data: bytes, bom: int, path: Path, ledger: Ledger, on_truncated_file: str) -> bytes:
    """The CSV bytes, minus a last row cut short (a quote never closed, or fewer fields than the header).

    Such a file was truncated: the rows after the cut are gone and cannot be counted, so by default the
    source fails; with on_truncated_file: salvage the partial row becomes one quarantine row. A file cut
    exactly at a row boundary cannot be told from a complete one.
    """
    if not data or data.endswith(b"\n"):
        return data
    lines = data.split(b"\n")
    header_fields = len(next(csv.reader([lines[0].decode("utf-8", errors="replace")]), []))
    start, inside = 0, False  # start: index of the line where the last row begins
    for k, line in enumerate(lines):
        if not inside:
            start = k
        if line.count(b'"') % 2:
            inside = not inside
    last = b"\n".join(lines[start:]).decode("utf-8", errors="replace")
    fields = len(next(csv.reader([last.replace("\n", " ")]), []))
    if start == 0 or not inside and fields >= header_fields:
        return data
    byte = bom + sum(len(line) + 1 for line in lines[:start])
    why = "a quoted field never closes" if inside else f"it has {fields} of the header's {header_fields} fields"
    if on_truncated_file == "fail":
        raise IngestError(
            f"ingest[{ledger.source}]: {path.name} breaks off in its last row (line {start + 1}, byte {byte}): {why}, so the "
            f"file was cut short; the {start - 1} line(s) before it could be salvaged. Restore the file (re-download or "
            f"`dvc pull`), or set sources.{ledger.source}.on_truncated_file: salvage in params.yaml to keep them and "
            "quarantine the cut row"
        )
    ledger.seen()
    ledger.note("truncated_files_salvaged")
    ledger.salvaged_files.append({"file": path.name, "at_byte": byte, "records_salvaged": None, "records_lost_estimate": 1,
                                  "bytes_unread": len(data) + bom - byte, "reason": "partial_last_row"})
    ledger.quarantine(
        path.name, f"line {start + 1}@byte {byte}", "truncated_file",
        f"{path.name} breaks off in its last row (line {start + 1}): {why}; the rows before it are kept "
        "(on_truncated_file: salvage); rows cut off the end of a file cannot be counted", last,
    )
    return data[:byte - bom]


def _bad_utf8_lines(data: bytes, bom: int) -> dict[int, int]:
    """0-based line index -> file byte offset of its first invalid UTF-8 byte."""
    bad, offset = {}, bom
    for k, line in enumerate(data.split(b"\n")):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as err:
            bad[k] = offset + err.start
        offset += len(line) + 1
    return bad


def _row_starts(lines: list[str]) -> list[int] | None:
    """0-based first line of every data row, plus the end line; None if quoting never closes."""
    starts, inside = [], False
    for k, line in enumerate(lines):
        if not inside:
            starts.append(k)
        if line.count('"') % 2:
            inside = not inside
    if inside:
        return None
    if lines[-1] == "":  # the text after the final newline is no row
        starts.pop()
    return starts[1:] + [len(lines) - (lines[-1] == "")]


def _check(rows: pl.DataFrame, full: bool) -> pl.DataFrame:
    """Add integer ids, the vote code and _reason (None for a good row, else the quarantine reason)."""
    col = pl.col
    therapist, client = col("interlocutor") == "therapist", col("interlocutor") == "client"
    main, talk = col("main_therapist_behaviour"), col("client_talk_type")
    absent = lambda c: col(c).is_null() | (col(c) == MISSING)  # noqa: E731
    subtype_columns = [c for c, _ in SUBTYPES.values()] if full else []
    rows = rows.with_columns(
        _tid=col("transcript_id").cast(pl.Int64, strict=False),
        _uid=col("utterance_id").cast(pl.Int64, strict=False),
        _aid=col("annotator_id").cast(pl.Int64, strict=False) if full else pl.lit(None, pl.Int64),
        _code=pl.when(therapist).then(main).otherwise(talk),
        _empty=_empty_texts(rows),
    )
    rows = rows.join(_conflicting_transcripts(rows), on="_tid", how="left")
    bad_subtype = pl.any_horizontal(
        [~absent(c) & ~col(c).is_in(list(m)).fill_null(False) for c, m in SUBTYPES.values()] if full else [pl.lit(False)]
    )
    reason = (
        pl.when(col("_bad_utf8").is_not_null()).then(pl.lit("invalid_utf8"))
        .when(col("_tid").is_null() | col("_uid").is_null() | (col("_aid").is_null() if full else False)).then(pl.lit("bad_id"))
        .when(col("_conflict").is_not_null()).then(pl.lit("conflicting_transcript_id"))
        .when(~(therapist | client).fill_null(False)).then(pl.lit("unknown_role"))
        .when((therapist & ~absent("client_talk_type"))
              | (client & ~pl.all_horizontal([absent(c) for c in ("main_therapist_behaviour", *subtype_columns)])))
        .then(pl.lit("label_role_mismatch"))
        .when(therapist & ~main.is_in(MI_BEHAVIORS).fill_null(False)).then(pl.lit("unknown_behavior"))
        .when(therapist & bad_subtype).then(pl.lit("unknown_subtype"))
        .when(client & ~talk.is_in(CLIENT_TALK).fill_null(False)).then(pl.lit("unknown_talk_type"))
        .when(col("_empty")).then(pl.lit("empty_utterance"))
    )
    rows = rows.with_columns(_reason=reason)
    # Of rows repeating one (transcript, utterance[, annotator]), the first good one in the file is kept.
    key = ["_tid", "_uid"] + (["_aid"] if full else [])
    good = col("_reason").is_null()
    rows = rows.with_columns(_first=col("_line").filter(good).first().over(key), _first_row=col("_row").filter(good).first().over(key))
    return rows.with_columns(_reason=pl.when(good & (col("_row") != col("_first_row"))).then(pl.lit("duplicate_row")).otherwise(col("_reason")))


def _conflicting_transcripts(rows: pl.DataFrame) -> pl.DataFrame:
    """_tid -> _conflict (what differs) for every transcript_id whose rows are not one transcript.

    "Same transcript", from the data: in the real full CSV every (transcript_id, utterance_id) has exactly one
    (interlocutor, utterance_text) across all its rows (11,330 rows, 9,699 keys; the 7 multi-annotator
    transcripts repeat each utterance verbatim for all 10 annotators). So rows sharing a transcript_id are
    one transcript (extra rows are further annotators, merged) only when each utterance_id reads the same,
    same speaker and same text, in all of them. Otherwise the id names two transcripts (e.g. another
    transcript's rows relabelled) and which rows belong to it cannot be told: all its rows are quarantined.
    Annotators may cover different utterances (a partial annotation is not a conflict). Rows with invalid
    UTF-8 are left out of the comparison (their text is lossy).
    """
    col = pl.col
    usable = rows.filter(col("_tid").is_not_null() & col("_uid").is_not_null() & col("_bad_utf8").is_null())
    texts = (
        usable.group_by("_tid", "_uid")
        .agg(col("interlocutor", "utterance_text", "_line", "_row").unique(maintain_order=True), _n=pl.struct("interlocutor", "utterance_text").n_unique())
        .filter(col("_n") > 1)
        .sort("_tid", "_uid")
        .unique("_tid", keep="first", maintain_order=True)
    )
    found = {
        tid: f"utterance_id {uid} differs between its rows: {[f'{w}: {t[:40]!r}' for w, t in zip(who, text)][:3]} "
             f"(lines {sorted(x for x in lines if x is not None)[:3]})"
        for tid, uid, who, text, lines in texts.select("_tid", "_uid", "interlocutor", "utterance_text", "_line").iter_rows()
    }
    return pl.DataFrame(
        {"_tid": list(found), "_conflict": list(found.values())}, schema={"_tid": pl.Int64, "_conflict": pl.String}
    )


def _empty_texts(rows: pl.DataFrame) -> pl.Series:
    """True where utterance_text is empty after normalize_text (which base would reject for the whole dialog)."""
    text = rows["utterance_text"]
    maybe = (text.is_null() | text.str.contains(_MAYBE_EMPTY)).fill_null(True)
    empty = pl.Series("_empty", [False] * rows.height, dtype=pl.Boolean)
    candidates = maybe.arg_true()
    if candidates.len():
        empty = empty.scatter(candidates, [not normalize_text(t or "") for t in text.gather(candidates)])
    return empty


_DETAILS = {
    "invalid_utf8": lambda r: f"invalid UTF-8 at byte {r['_bad_utf8']} of the file",
    "bad_id": lambda r: "transcript_id={!r}, utterance_id={!r}, annotator_id={!r}: ids must be integers".format(
        r["transcript_id"], r["utterance_id"], r.get("annotator_id")),
    "unknown_role": lambda r: f"interlocutor {r['interlocutor']!r} is neither therapist nor client",
    "label_role_mismatch": lambda r: (
        f"{r['interlocutor']} row carries the other role's code: main_therapist_behaviour={r['main_therapist_behaviour']!r}, "
        f"client_talk_type={r['client_talk_type']!r}" + "".join(f", {c}={r[c]!r}" for c, _ in SUBTYPES.values() if c in r)),
    "unknown_behavior": lambda r: f"main_therapist_behaviour {r['main_therapist_behaviour']!r} not in {MI_BEHAVIORS}",
    "unknown_subtype": lambda r: "unknown subtype: " + ", ".join(
        f"{c}={r[c]!r}" for c, m in SUBTYPES.values() if r[c] not in (None, MISSING, *m)),
    "unknown_talk_type": lambda r: f"client_talk_type {r['client_talk_type']!r} not in {CLIENT_TALK}",
    "empty_utterance": lambda r: "utterance_text is empty after normalization",
    "conflicting_transcript_id": lambda r: (
        f"transcript_id {r['_tid']} names more than one transcript ({r['_conflict']}); its rows cannot be told apart, "
        "so none is kept: fix the transcript_ids in the CSV"),
    "duplicate_row": lambda r: "repeats the (transcript_id, utterance_id{}) of {}".format(
        ", annotator_id" if "annotator_id" in r else "", f"line {r['_first']}" if r["_first"] is not None else f"row {r['_first_row']}"),
}


def _quarantine(ledger: Ledger, name: str, bad: pl.DataFrame) -> None:
    for r in bad.iter_rows(named=True):
        record = f"line {r['_line']}" if r["_line"] is not None else f"row {r['_row']}"
        ledger.quarantine(name, record, r["_reason"], _DETAILS[r["_reason"]](r), r["_raw"])


def _one_per_utterance(kept: pl.DataFrame, full: bool, rule: str) -> pl.DataFrame:
    """One row per (transcript, utterance), in utterance order, with mi_code, agreement and n_annotators."""
    key = ["_tid", "_uid"]
    order = key + (["_votes"] if rule == "majority" else []) + ["_aid", "_row"]
    chosen = (
        kept.with_columns(_votes=pl.len().over(*key, "_code"), _n=pl.len().over(key))
        .sort(order, descending=[c == "_votes" for c in order], nulls_last=True)
        .unique(key, keep="first", maintain_order=True)
    )
    mi_code = pl.lit(None, pl.String)
    if full:
        for behavior, (column, codes) in SUBTYPES.items():
            mi_code = pl.when(pl.col("main_therapist_behaviour") == behavior).then(
                pl.col(column).replace_strict(codes, default=None, return_dtype=pl.String)).otherwise(mi_code)
    return chosen.with_columns(
        _mi_code=mi_code,
        _agreement=(pl.col("_votes") / pl.col("_n")) if full else pl.lit(None, pl.Float64),
        _n_annotators=pl.col("_n").cast(pl.Int64) if full else pl.lit(None, pl.Int64),
    )


def _transcript_meta(turns: pl.DataFrame, ledger: Ledger) -> dict[int, dict[str, Any]]:
    """Per transcript, the majority value of each metadata column (ties: the value seen first in the file)."""
    meta: dict[int, dict[str, Any]] = {tid: {} for tid in turns["_tid"].unique()}
    stripped = pl.col(META).str.strip_chars()  # 6 real transcripts say "smoking cessation " (trailing space)
    turns = turns.with_columns(pl.when(stripped != "").then(stripped))
    conflicts = turns.group_by("_tid").agg(pl.any_horizontal(pl.col(META).n_unique() > 1).alias("_conflict"))
    if conflicts["_conflict"].sum():
        ledger.note("transcript_metadata_conflict", conflicts["_conflict"].sum())
    for field in META:
        majority = (
            turns.filter(pl.col(field).is_not_null())
            .group_by("_tid", field).agg(pl.len().alias("_count"), pl.col("_row").min().alias("_first"))
            .sort(["_tid", "_count", "_first"], descending=[False, True, False])
            .unique("_tid", keep="first")
        )
        for tid, value in majority.select("_tid", field).iter_rows():
            meta[tid][field] = value
    for values in meta.values():
        if values.get("mi_quality") not in MI_QUALITIES:
            ledger.note("unknown_mi_quality")
            values["mi_quality"] = None
    return meta


def _dialogs(turns: pl.DataFrame, meta: dict[int, dict[str, Any]], name: str) -> list[ParsedDialog]:
    located = turns.sort("_tid", "_uid").with_columns(
        _location=pl.when(pl.col("_line").is_not_null())
        .then(pl.format("{}:{}", pl.lit(name), pl.col("_line")))
        .otherwise(pl.format("{}#row{}", pl.lit(name), pl.col("_row"))),
    )
    columns = ["interlocutor", "utterance_text", "_location", "main_therapist_behaviour", "_mi_code",
               "client_talk_type", "_agreement", "_n_annotators"]
    dialogs = []
    for part in located.partition_by("_tid", maintain_order=True):
        tid = part["_tid"][0]
        parsed = [
            ParsedTurn(
                role=ROLES[role], text=text, location=location,
                mi_behavior=main if role == "therapist" else None, mi_code=code,
                client_talk=talk if role == "client" else None, code_agreement=agreement, n_annotators=n,
            )
            for role, text, location, main, code, talk, agreement, n in part.select(columns).iter_rows()
        ]
        info = meta[tid]
        dialogs.append(ParsedDialog(
            key=str(tid), file=name, record=f"transcript_id={tid}", turns=parsed,
            raw="\n".join(part["_raw"]), n_records=part.height, topic=info.get("topic"), method="MI",
            meta={"mi_quality": info.get("mi_quality"), "video_title": info.get("video_title"),
                  "video_url": info.get("video_url"), "transcript_id": tid},
        ))
    return dialogs
