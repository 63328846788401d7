"""Full raw corpora -> the small bundled sample in data/sample/ (deterministic; maintainers run it once).

The sample keeps each source's real format and its gotchas (CRLF and LF files, continuation lines,
same-speaker runs, dialogs ending on the client, the triple duplicate of CPsyCounD, multi-annotator
AnnoMI transcripts, KMI's Hangul file names), so the embedded default exercises every code path.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

CPSYCOUND_ALWAYS = [0, 1, 2, 10, 100, 1762, 2274, 2301]  # 1762 = 2274 = 2301: the documented triple duplicate
ANNOMI_TRANSCRIPTS_MULTI = 2  # transcripts coded by several annotators
ANNOMI_TRANSCRIPTS_HIGH, ANNOMI_TRANSCRIPTS_LOW = 4, 2
KMI_PER_FILE = 12
CPSYCOUNE_PER_TOPIC = 2


def make_sample(raw_root: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _cpsycound(raw_root / "CPsyCounD", out / "CPsyCounD")
    _cpsycoune(raw_root / "CPsyCounE", out / "CPsyCounE")
    _annomi(raw_root / "AnnoMI", out / "AnnoMI")
    _kmi(raw_root / "KMI_prerelease", out / "KMI_prerelease")
    for name in ("CPsyCounD", "CPsyCounE", "AnnoMI", "KMI_prerelease"):
        shutil.copyfile(raw_root / name / "SOURCE.md", out / name / "SOURCE.md")


def _cpsycound(src: Path, dst: Path) -> None:
    files = sorted((src / "Data").glob("case_*.txt"), key=lambda p: int(p.stem.split("_")[1]))
    chosen = {n for n in CPSYCOUND_ALWAYS}
    wanted = {"crlf": 4, "lf": 4, "continuation": 4, "same_speaker": 4, "ends_on_client": 4}
    for path in files:
        features = _cpsycound_features(path.read_bytes())
        number = int(path.stem.split("_")[1])
        for feature in features:
            if wanted.get(feature, 0) > 0 and number not in chosen:
                chosen.add(number)
                wanted[feature] -= 1
        if not any(wanted.values()):
            break
    (dst / "Data").mkdir(parents=True, exist_ok=True)
    for number in sorted(chosen):
        shutil.copyfile(src / "Data" / f"case_{number}.txt", dst / "Data" / f"case_{number}.txt")


def _cpsycound_features(data: bytes) -> set[str]:
    text = data.decode("utf-8")
    features = {"crlf" if "\r\n" in text else "lf"}
    speakers = []
    for line in text.splitlines():
        match = re.match(r"(来访者|心理咨询师)：", line)
        if match:
            speakers.append(match.group(1))
        elif line.strip():
            features.add("continuation")
    if any(a == b for a, b in zip(speakers, speakers[1:])):
        features.add("same_speaker")
    if speakers and speakers[-1] == "来访者":
        features.add("ends_on_client")
    return features


def _cpsycoune(src: Path, dst: Path) -> None:
    for topic in sorted(p for p in src.iterdir() if p.is_dir()):
        (dst / topic.name).mkdir(parents=True, exist_ok=True)
        for n in range(1, CPSYCOUNE_PER_TOPIC + 1):
            shutil.copyfile(topic / f"{n}.json", dst / topic.name / f"{n}.json")


def _annomi(src: Path, dst: Path) -> None:
    with open(src / "AnnoMI-full.csv", newline="", encoding="utf-8") as f:
        full = list(csv.DictReader(f))
    annotators: dict[str, set[str]] = {}
    quality: dict[str, str] = {}
    for row in full:
        annotators.setdefault(row["transcript_id"], set()).add(row["annotator_id"])
        quality[row["transcript_id"]] = row["mi_quality"]
    ordered = sorted(annotators, key=int)
    multi = [t for t in ordered if len(annotators[t]) > 1][:ANNOMI_TRANSCRIPTS_MULTI]
    single = [t for t in ordered if len(annotators[t]) == 1]
    high = [t for t in single if quality[t] == "high"][:ANNOMI_TRANSCRIPTS_HIGH]
    low = [t for t in single if quality[t] == "low"][:ANNOMI_TRANSCRIPTS_LOW]
    keep = set(multi + high + low)
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("AnnoMI-full.csv", "AnnoMI-simple.csv"):
        with open(src / name, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader)
            column = header.index("transcript_id")
            rows = [row for row in reader if row[column] in keep]
        with open(dst / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)


def _kmi(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("KMI_*.json")):
        records = json.loads(path.read_text(encoding="utf-8"))[:KMI_PER_FILE]
        (dst / path.name).write_text(json.dumps(records, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
