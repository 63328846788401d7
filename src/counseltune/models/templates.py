"""counseltune's chat templates (Jinja, rendered by transformers' apply_chat_template) and the tokens they rely on.

Each template knows the roles system, user and assistant and raises for any other role instead of silently
dropping it. None enforces strict user/assistant alternation: counseling dialogs may open with the counselor.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    jinja: str
    control_tokens: tuple[str, ...]  # the template writes these; each must be ONE token of the model's vocabulary
    stop_tokens: tuple[str, ...]  # end an assistant turn; added to generation_config.eos_token_id


def get_template(name: str) -> ChatTemplate:
    """Template name -> ChatTemplate; KeyError naming the known ones."""
    if name not in TEMPLATES:
        raise KeyError(f"unknown chat template {name!r}; known: native, {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


def _unknown_role(template: str) -> str:
    return ("{{- raise_exception('" + template + " chat template: unknown message role \\'' ~ message['role'] ~ "
            "'\\' (expected system, user or assistant)') -}}")


CHATML = r"""
{%- for message in messages -%}
{%- if message['role'] in ['system', 'user', 'assistant'] -%}
{{- '<|im_start|>' ~ message['role'] ~ '\n' ~ message['content'] ~ '<|im_end|>\n' -}}
{%- else -%}
""" + _unknown_role("chatml") + r"""
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- endif -%}
"""

# Gemma has no system role: like Gemma's own template, the system text opens the first user turn. When the first
# turn after it is the model's (a counselor opening the session), it becomes a user turn of its own so that it
# never lands inside text the model is trained to produce.
GEMMA = r"""
{{- bos_token -}}
{%- if messages and messages[0]['role'] == 'system' -%}
{%- set system = messages[0]['content'] -%}
{%- set turns = messages[1:] -%}
{%- else -%}
{%- set system = none -%}
{%- set turns = messages -%}
{%- endif -%}
{%- if system is not none and (not turns or turns[0]['role'] != 'user') -%}
{{- '<start_of_turn>user\n' ~ system ~ '<end_of_turn>\n' -}}
{%- endif -%}
{%- for message in turns -%}
{%- if message['role'] == 'user' -%}
{{- '<start_of_turn>user\n' -}}
{%- if loop.first and system is not none -%}
{{- system ~ '\n\n' -}}
{%- endif -%}
{{- message['content'] ~ '<end_of_turn>\n' -}}
{%- elif message['role'] == 'assistant' -%}
{{- '<start_of_turn>model\n' ~ message['content'] ~ '<end_of_turn>\n' -}}
{%- elif message['role'] == 'system' -%}
{{- raise_exception('gemma chat template: a system message must be the first message (Gemma folds it into the first user turn)') -}}
{%- else -%}
""" + _unknown_role("gemma") + r"""
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<start_of_turn>model\n' -}}
{%- endif -%}
"""

# Baichuan2-Chat: system text first, then <reserved_106> (user_token_id 195) before each user message and
# <reserved_107> (assistant_token_id 196) before each reply; a reply ends with </s> (LLaMA-Factory's
# baichuan2 template; Baichuan2's own fine-tune script puts the same eos label at the next user token).
BAICHUAN2 = r"""
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}
{%- if not loop.first -%}
{{- raise_exception('baichuan2 chat template: a system message must be the first message') -}}
{%- endif -%}
{{- message['content'] -}}
{%- elif message['role'] == 'user' -%}
{{- '<reserved_106>' ~ message['content'] -}}
{%- elif message['role'] == 'assistant' -%}
{{- '<reserved_107>' ~ message['content'] ~ eos_token -}}
{%- else -%}
""" + _unknown_role("baichuan2") + r"""
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<reserved_107>' -}}
{%- endif -%}
"""

TEMPLATES: dict[str, ChatTemplate] = {
    "chatml": ChatTemplate("chatml", CHATML.strip(), ("<|im_start|>", "<|im_end|>"), ("<|im_end|>",)),
    "gemma": ChatTemplate("gemma", GEMMA.strip(), ("<start_of_turn>", "<end_of_turn>"), ("<end_of_turn>",)),
    "baichuan2": ChatTemplate("baichuan2", BAICHUAN2.strip(), ("<reserved_106>", "<reserved_107>"), ()),
}
