"""Benchmark: what schema-constrained decoding costs the local backend, as a ratio to unconstrained decoding.

The same prompts (the safety judge's real requests for the packaged crisis probes, with a fixed reply), the same
max_new_tokens and the same batches go through counseltune.predict.generate twice per repeat: unconstrained, and
under the safety judge's JSON Schema (llm/constrained.py, llguidance). Tokens/s is generated tokens over wall
time; the ratio constrained / unconstrained is computed within one run (best of --repeats for each, alternated
so load drifts hit both). A constrained reply usually ends sooner (its JSON closes, then only a stop token is
allowed) and fewer steps share the prompt's prefill, so generated tokens/s would charge both to the grammar:
the comparable figure is decode throughput, batch rows x decode steps per second of decoding (timed between
decode steps by a last logits processor, prefill left out), the same work per step on both sides. Target: that ratio >= 0.85 (constrained decoding costs at most 15%). Tokens/s is reported
too, with the share of replies that are schema-valid JSON.

  python benchmarks/bench_structured.py --model smollm2-135m-instruct --out benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from _common import ensure_model, machine, write_section
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.85
REPLY = "I'm so sorry you feel this way. You are not alone. Are you safe right now?"


def log(message: str) -> None:
    print(f"bench_structured: {message}", file=sys.stderr, flush=True)


def prompts(tokenizer, n: int) -> list[list[int]]:
    from counseltune.fidelity.crisis_safety.safety import load_probes
    from counseltune.fidelity.crisis_safety.safety_prompts import EXCHANGE, SAFETY_SYSTEM
    from counseltune.models.generate import render

    probes = [p for p in load_probes() if p.language == "en"] or load_probes()
    out = []
    for i in range(n):
        p = probes[i % len(probes)]
        messages = [{"role": "system", "content": SAFETY_SYSTEM["en"]},
                    {"role": "user", "content": EXCHANGE["en"].format(category=p.category, probe=p.text, reply=REPLY)
                     + ("" if i < len(probes) else f" (case {i})")}]
        out.append(render(messages, tokenizer)[1])
    return out


class StepClock:
    """A last logits processor that only notes when each decode step reaches it: the time between two calls is
    one decode step (forward pass plus any mask), with the prompt's prefill left out."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []

    def __call__(self, input_ids, scores):
        self.calls.append((scores.shape[0], time.perf_counter()))
        return scores


def run(lm, tokenizer, ids, decode, processors) -> tuple[float, list[list[int]], int, float]:
    """(decode row-steps/s, outputs, tokens generated, tokens/s) of one pass over the prompts."""
    from counseltune.models.generate import generate

    clocks: list[StepClock] = []

    def with_clock(rows: int) -> list:
        clocks.append(StepClock())
        return [*(processors(rows) if processors else []), clocks[-1]]

    started = time.perf_counter()
    outputs, stats = generate(lm, tokenizer, ids, decode, seed=0, progress=False, logits_processors=with_clock)
    elapsed = time.perf_counter() - started
    row_steps = sum(rows for clock in clocks for rows, _ in clock.calls[1:])
    step_s = sum(clock.calls[-1][1] - clock.calls[0][1] for clock in clocks if len(clock.calls) > 1)
    return row_steps / step_s, outputs, stats["tokens_generated"], stats["tokens_generated"] / elapsed


def valid_share(tokenizer, outputs, validator) -> float:
    from counseltune.models.generate import hypothesis_text

    ok = 0
    for new in outputs:
        try:
            ok += not list(validator.iter_errors(json.loads(hypothesis_text(tokenizer, new))))
        except ValueError:
            pass
    return ok / len(outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()

    from counseltune.config import load_params
    from counseltune.fidelity.crisis_safety.safety import safety_schema
    from counseltune.llm.constrained import SchemaDecoding
    from counseltune.llm.types import OutputSchema
    from counseltune.models.decode import DecodeSettings
    from counseltune.models.generate import stop_token_ids
    from counseltune.models.loader import load_chat_model

    params = load_params(ROOT / "params.yaml")
    model_dir = ensure_model(args.model, args.model_dir, params, log)
    lm, tokenizer = load_chat_model(args.model, {"quantization": "none"}, model_dir)  # dtype: the folder's provenance
    ids = prompts(tokenizer, args.prompts)
    decode = DecodeSettings(max_new_tokens=args.max_new_tokens, temperature=0.0, top_p=1.0, repetition_penalty=1.0,
                            batch_size=args.batch_size)
    started = time.perf_counter()
    schemas = SchemaDecoding(tokenizer, stop_token_ids(lm, tokenizer), lm.get_output_embeddings().weight.shape[0])
    schema = OutputSchema.of("safety", safety_schema())
    constrained = schemas.processors(schema)
    setup_s = time.perf_counter() - started
    log(f"grammar setup {setup_s:.2f} s; warm-up")
    run(lm, tokenizer, ids[:args.batch_size], decode.with_request(max_new_tokens=4), None)
    run(lm, tokenizer, ids[:args.batch_size], decode.with_request(max_new_tokens=4), constrained)
    best = {"unconstrained": (0.0, None, 0, 0.0), "constrained": (0.0, None, 0, 0.0)}
    for repeat in range(args.repeats):
        for name, processors in (("unconstrained", None), ("constrained", constrained)):
            result = run(lm, tokenizer, ids, decode, processors)
            log(f"repeat {repeat + 1} {name}: {result[0]:.1f} row-steps/s, {result[3]:.1f} tok/s ({result[2]} tokens)")
            if result[0] > best[name][0]:
                best[name] = result
    validator = Draft202012Validator(safety_schema())
    ratio = best["constrained"][0] / best["unconstrained"][0]
    tok_ratio = best["constrained"][3] / best["unconstrained"][3]
    info = machine("torch", "transformers", "llguidance")
    rows = "\n".join(f"| {name} | {steps:.1f} | {tps:.1f} | {tokens} | {valid_share(tokenizer, outputs, validator):.0%} |"
                     for name, (steps, outputs, tokens, tps) in best.items())
    command = "python benchmarks/bench_structured.py " + shlex.join(sys.argv[1:])
    section = f"""<!-- bench_structured:start -->
## Structured outputs: constrained vs unconstrained decoding (local backend)

`{command}` on {info['date']}: {info['cpu']}, {info['nproc']} cores, {info['ram']} RAM, load {info['load']};
torch {info['torch']}, transformers {info['transformers']}, llguidance {info['llguidance']}.
Model {args.model} (float32, greedy), {args.prompts} safety-judge prompts, batch {args.batch_size},
max_new_tokens {args.max_new_tokens}, best of {args.repeats} alternated repeats; grammar setup (tokenizer view +
schema compile, once per client) {setup_s:.2f} s, not counted below.

| decoding | decode throughput (rows x steps / s, prefill excluded) | tokens/s | tokens generated | schema-valid replies |
| --- | ---: | ---: | ---: | ---: |
{rows}

**Ratio constrained / unconstrained decode throughput: {ratio:.3f}** (target >= {TARGET}: {'met' if ratio >= TARGET else 'NOT met'});
end-to-end tokens/s ratio {tok_ratio:.3f} (constrained replies stop sooner, so fewer tokens share each prefill).
<!-- bench_structured:end -->
"""
    write_section(args.out, section, "bench_structured")
    print(section)


if __name__ == "__main__":
    main()
