"""The LLM clients of one model's fidelity run, each made on first use.

The judge and the simulated client are the params' llm client (two instances, so their usage is accounted
apart); the counselors are the model's base folder with its adapter (fine-tuned) and without (base), in this
process (the local backend, in the registry's dtype and quantization) or on a model server
(fidelity.counselor.engine served).
A client never asked for is never made: no model is loaded and no API key is read for a disabled part.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import cached_property
from pathlib import Path

from counseltune.config import llm_client_config, model_params
from counseltune.llm import Client, make_client
from counseltune.models.decode import DecodeSettings

ROLES = ("judge", "simulated_client", "counselor", "base_counselor")


class StageClients:
    def __init__(self, params: dict, model: str, base_dir: Path, adapter_dir: Path) -> None:
        self.params, self.model, self.base_dir, self.adapter_dir = params, model, Path(base_dir), Path(adapter_dir)

    @cached_property
    def judge(self) -> Client:
        return make_client(llm_client_config(self.params), stage=f"fidelity[{self.model}] judge")

    @cached_property
    def simulated_client(self) -> Client:
        return make_client(llm_client_config(self.params), stage=f"fidelity[{self.model}] simulated client")

    @cached_property
    def counselor(self) -> Client:
        """The fine-tuned model: base weights + LoRA adapter."""
        return self._counselor(self.adapter_dir)

    @cached_property
    def base_counselor(self) -> Client:
        return self._counselor(None)

    @property
    def decode(self) -> DecodeSettings:
        """How the counselors decode: the registry's models.<model>.decode, as the predict stage decodes."""
        return DecodeSettings.from_registry(self.model, model_params(self.params, self.model)["decode"])

    def close(self) -> None:
        """Stop any model server a served counselor started."""
        for role in ("counselor", "base_counselor"):
            client = self.__dict__.get(role)
            if client is not None and hasattr(client, "close"):
                client.close()

    def _counselor(self, adapter_dir: Path | None) -> Client:
        """fidelity.counselor.engine: in_process (the local backend) or served (a model server, as predict.served)."""
        cfg = self.params["fidelity"].get("counselor") or {}
        if cfg.get("engine", "in_process") == "served":
            from counseltune.llm.served import served_client

            # the base served as <model>, the adapter as <model>-finetuned (with start: each client its own server)
            return served_client(cfg["served"], "fidelity.counselor.served", self.model,
                                 model_params(self.params, self.model), self.base_dir, adapter_dir)
        return make_client(self._local(adapter_dir))

    def usage(self) -> dict[str, dict]:
        """role -> {model, backend, usage} of every client this run made."""
        made = {role: self.__dict__[role] for role in ROLES if role in self.__dict__}
        return {role: {"model": c.model, "backend": c.backend, **asdict(c.usage)} for role, c in made.items()}

    def _local(self, adapter_dir: Path | None) -> dict:
        shared, entry = llm_client_config(self.params), model_params(self.params, self.model)
        return {"backend": "local", "model": self.model, "model_dir": str(self.base_dir),
                "adapter_dir": str(adapter_dir) if adapter_dir else None, "cache_dir": shared["cache_dir"],
                "prices": shared["prices"], "batch_size": self.decode.batch_size,
                "dtype": entry["dtype"], "quantization": entry["quantization"]}  # loaded as the registry says
