import pytest
from jinja2.exceptions import TemplateError

from counseltune.models.templates import TEMPLATES, get_template
from tests.models import DIALOG, tiny_tokenizer


def render(template: str, messages: list[dict], add_generation_prompt: bool = False) -> str:
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = get_template(template).jinja
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def test_chatml_renders_each_message_as_an_im_block():
    assert render("chatml", DIALOG) == (
        "<|im_start|>system\nYou are a counselor.<|im_end|>\n"
        "<|im_start|>user\nI feel low.<|im_end|>\n"
        "<|im_start|>assistant\nTell me more.<|im_end|>\n")
    assert render("chatml", DIALOG[:2], add_generation_prompt=True).endswith(
        "<|im_start|>user\nI feel low.<|im_end|>\n<|im_start|>assistant\n")


def test_gemma_folds_the_system_text_into_the_first_user_turn():
    assert render("gemma", DIALOG) == (
        "<bos><start_of_turn>user\nYou are a counselor.\n\nI feel low.<end_of_turn>\n"
        "<start_of_turn>model\nTell me more.<end_of_turn>\n")
    assert render("gemma", DIALOG[:2], add_generation_prompt=True) == (
        "<bos><start_of_turn>user\nYou are a counselor.\n\nI feel low.<end_of_turn>\n<start_of_turn>model\n")


def test_gemma_keeps_the_system_text_out_of_a_counselor_opening_turn():
    opening = [DIALOG[0], DIALOG[2], DIALOG[1]]
    assert render("gemma", opening) == (
        "<bos><start_of_turn>user\nYou are a counselor.<end_of_turn>\n"
        "<start_of_turn>model\nTell me more.<end_of_turn>\n"
        "<start_of_turn>user\nI feel low.<end_of_turn>\n")


def test_baichuan2_uses_reserved_tokens_and_ends_replies_with_eos():
    assert render("baichuan2", DIALOG) == "You are a counselor.<reserved_106>I feel low.<reserved_107>Tell me more.<eos>"
    assert render("baichuan2", DIALOG[:2], add_generation_prompt=True) == (
        "You are a counselor.<reserved_106>I feel low.<reserved_107>")


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_an_unknown_role_raises_instead_of_vanishing(template):
    with pytest.raises(TemplateError, match=f"{template} chat template: unknown message role 'client'"):
        render(template, [*DIALOG, {"role": "client", "content": "hi"}])


@pytest.mark.parametrize("template", ["gemma", "baichuan2"])
def test_a_late_system_message_raises(template):
    with pytest.raises(TemplateError, match="system message must be the first message"):
        render(template, [DIALOG[1], DIALOG[0]])


def test_an_unknown_template_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="native, chatml, gemma, baichuan2"):
        get_template("llama3")
