"""Inputs of the fidelity stages for tests: small fidelity params, tiny predictions tables, in-process fake clients."""

from __future__ import annotations

import copy
from pathlib import Path

import polars as pl

from counseltune.llm import Reply, Usage
from counseltune.predict import select_items
from counseltune.schemas.tables import Predictions
from counseltune.tables.io import write_table
from tests.fidelity.test_judge_loopback import JUDGE, answer

MODEL = "smollm2-135m-instruct"
# what each variant "says", item after item: the base model only asks, the fine-tuned one reflects and asks
REPLIES = {"base": ["What brings you here today?"],
           "finetuned": ["It sounds like you feel stuck and worried about it.", "What would you like to change?"]}
CLIENT_LINE = "I feel stuck at work, and I don't know what to do."


def fidelity_params(params: dict, *, judge=False, simulate=False, safety=False, **llm) -> dict:
    """params with fast fidelity settings (each LLM part on or off); llm overrides go to params['llm']."""
    p = copy.deepcopy(params)
    p["fidelity"] = {
        "coder": {"source": "annomi", "seed": 20240419, "test_fraction": 0.2, "min_df": 2},
        "judge": {"enabled": judge, "seed": 0, "max_reasks": 1, "miti_max_tokens": 384, "ctrs_max_tokens": 384,
                  "ctrs_competence_total": 40, "max_sessions": 1},
        "simulate": {"enabled": simulate, "source": "curated", "path": None, "attitudes": ["neutral"], "limit": 1,
                     "opening_turns": 1, "rounds": 2, "seed": 0, "client_max_tokens": 16, "client_temperature": 0.7},
        "safety": {"enabled": safety, "threshold": 0.9, "limit": 1, "answer_max_tokens": 8, "judge_max_tokens": 256},
        "bootstrap_samples": 200, "seed": 7,
    }
    p["models"][MODEL]["decode"] = {**p["models"][MODEL]["decode"], "max_new_tokens": 8}
    p["llm"] = {**p["llm"], **llm}
    return p


def write_predictions(params: dict, processed: Path, out: Path) -> Path:
    """predictions/<model>/{base,finetuned}.parquet for the held-out items predict would choose, fixed replies."""
    items, _ = select_items(params, processed)
    for variant, replies in REPLIES.items():
        rows = [{"model": MODEL, "variant": variant, "dialog_id": i.dialog_id, "turn_index": i.turn_index,
                 "source": i.source, "language": i.language, "reference": i.reference,
                 "hypothesis": replies[k % len(replies)], "prompt_tokens": 10, "new_tokens": 5}
                for k, i in enumerate(items)]
        write_table(pl.DataFrame(rows), out / f"{variant}.parquet", Predictions)
    return out


def respond(body: dict) -> str:
    """The loopback's answers: a simulated client speaks, everything else is tests/fidelity's scripted judge."""
    system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    return CLIENT_LINE if "role-playing a client" in system else answer(body)


class FakeClient:
    """An in-process Client: the judge's answers by respond(), a counselor's by its model name (answer())."""

    backend = "fake"

    def __init__(self, model: str) -> None:
        self.model, self.usage = model, Usage()

    def complete(self, requests, desc: str = ""):
        self.usage.requests += len(requests)
        bodies = [{"model": self.model, "messages": [{"role": r, "content": c} for r, c in q.messages]} for q in requests]
        return [Reply(respond(b) if self.model == JUDGE else answer(b), 1, 1, "stop", False) for b in bodies]
