"""One client for every LLM call: OpenAI-compatible endpoints and local transformers models (see types.py).

    client = make_client(params["llm"], model_dir=...)
    results = client.complete([ChatRequest.of(messages, max_tokens=200)], desc="synthesize")
    print(write_usage(path, client.usage, stage="synthesize", model=client.model))
"""

from .errors import BudgetExceeded, ConfigError, LLMError, MissingAPIKey
from .factory import make_client
from .redact import Redactor
from .types import ChatRequest, Client, Failure, OutputSchema, Reply, Usage
from .usage import summary, write_usage

__all__ = ["BudgetExceeded", "ChatRequest", "Client", "ConfigError", "Failure", "LLMError", "MissingAPIKey",
           "OutputSchema", "Redactor", "Reply", "Usage", "make_client", "summary", "write_usage"]
