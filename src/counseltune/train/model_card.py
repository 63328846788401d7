"""The adapter's README.md: base model and provenance, data, params, metrics, intended use, clinical caveat."""

from __future__ import annotations

import json
from typing import Any

INTENDED_USE = "research on counseling dialogue models"
CLINICAL_CAVEAT = (
    "This adapter is a research artifact. It is **not a substitute for a licensed clinician**, must **not be used "
    "in crisis situations** (anyone at risk should contact local emergency services or a crisis line), and its "
    "outputs are **unvalidated for clinical use**: they can be wrong, inappropriate or harmful."
)


def render_model_card(model: str, model_params: dict[str, Any], metrics: dict[str, Any],
                      provenance: dict[str, Any] | None = None, sft_stats: dict[str, Any] | None = None) -> str:
    """Markdown model card (with Hugging Face front matter) for one trained adapter."""
    source = model_params.get("source", {})
    quant = model_params.get("quantization", "none")
    kind = "QLoRA" if quant != "none" else "LoRA"
    template, dtype = model_params.get("template", "native"), model_params.get("dtype")
    front = ["---", "library_name: peft", "pipeline_tag: text-generation",
             "tags: [lora, counseling, research, counseltune]", "---", ""]
    lines = [
        f"# counseltune LoRA adapter: {model}", "",
        (f"A {kind} adapter trained by the counseltune pipeline on counseling dialogues (client turns as context, "
         "counselor turns as targets)."), "",
        "## Intended use", "",
        f"Intended use: {INTENDED_USE}. Compare it with its base model on held-out dialogs; do not deploy it to people.", "",
        "## Clinical-use caveat", "", CLINICAL_CAVEAT, "",
        "## Base model", "",
        f"- registry name: `{model}`",
        f"- source: `{json.dumps(source, sort_keys=True)}`",
        f"- chat template: `{template}`; weights dtype `{dtype}`, quantization `{quant}`",
    ]
    if provenance:
        lines += ["- provenance (counseltune_base.json):", "", _json_block(provenance)]
    lines += ["", "## Training data", ""]
    if sft_stats:
        lines += ["SFT dataset statistics:", "", _json_block(sft_stats)]
    else:
        lines += ["No SFT statistics were given for this run."]
    lines += ["", "## Training parameters", "",
              "LoRA:", "", _json_block(model_params.get("lora", {})), "",
              "Training:", "", _json_block(model_params.get("train", {})), "",
              "## Results", "", _json_block(metrics), "",
              "## How to load", "",
              "```python",
              "from peft import PeftModel",
              "from transformers import AutoModelForCausalLM, AutoTokenizer",
              f"base = AutoModelForCausalLM.from_pretrained('models/base/{model}')",
              f"model = PeftModel.from_pretrained(base, 'models/adapters/{model}')",
              f"tokenizer = AutoTokenizer.from_pretrained('models/adapters/{model}')  # carries the chat template",
              "```", ""]
    return "\n".join(front + lines)


def _json_block(obj: Any) -> str:
    return "```json\n" + json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n```"
