"""Synthesis counts per generator, from the synthesize stage's stats (metrics/synthesize/<generator>.json) and the
SFT mix each model's sft-data stage recorded (metrics/sft/<model>.json).

Computed here, rendered by the comparison report: what was requested, attempted, accepted and quarantined, the
acceptance rate, the replacement rounds and why the stage stopped; then how many of the accepted sessions each model
actually trained on (sft.synthetic's share of them, in a language sft.languages keeps) and their share of its SFT data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from counseltune.errors import CounseltuneError


@dataclass(frozen=True)
class SftMix:
    dialogs: int  # this generator's sessions in the model's SFT data (train + val)
    sft_dialogs: int  # every dialog of the model's SFT data

    @property
    def share(self) -> float | None:
        return self.dialogs / self.sft_dialogs if self.sft_dialogs else None


@dataclass(frozen=True)
class SynthesisRow:
    generator: str
    language: str
    requested: int
    attempted: int
    accepted: int
    quarantined: int
    acceptance_rate: float | None  # accepted / attempted; None when nothing was attempted
    rounds: int  # attempt rounds: the first one plus the replacement rounds
    stop_reason: str | None
    stop_detail: str
    mix: dict[str, SftMix | None]  # model -> its SFT mix; None when its sft stats are missing or predate the count


def synthesis_rows(generators: list[str], synthesize_dir: Path, sft_dir: Path | None, models: list[str]) -> list[SynthesisRow]:
    """One row per generator of synthesize.run, in that order."""
    sft = {m: _read(Path(sft_dir) / f"{m}.json") for m in models} if sft_dir is not None else {}
    rows = []
    for generator in generators:
        path = Path(synthesize_dir) / f"{generator}.json"
        if not path.exists():
            raise CounseltuneError(f"{path} not found: synthesize.run names {generator!r}, so run its synthesize stage "
                                   "first (both engines run it before report-compare)")
        stats = json.loads(path.read_text(encoding="utf-8"))
        attempted, accepted = stats["n_attempted"], stats["n_accepted"]
        rows.append(SynthesisRow(
            generator=generator, language=stats["language"], requested=stats["n_requested"], attempted=attempted,
            accepted=accepted, quarantined=stats["n_quarantined"],
            acceptance_rate=accepted / attempted if attempted else None, rounds=len(stats["attempt_rounds"]),
            stop_reason=stats["stop_reason"], stop_detail=stats.get("stop_detail") or "",
            mix={m: _mix(sft.get(m), generator, stats["language"]) for m in models}))
    return rows


def _mix(stats: dict | None, generator: str, language: str) -> SftMix | None:
    if stats is None or "synthetic_dialogs" not in stats:
        return None
    total = sum(split["dialogs"] for split in stats["splits"].values())
    # sft-data counts the subsample sft.synthetic chose; its language filter (sft.languages) keeps all or none of it
    mixed = stats["synthetic_dialogs"].get(generator, 0) if language in stats["languages"] else 0
    return SftMix(mixed, total)


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
