"""Render one curated dialog with the model's chat template into SFT samples: loss only on counselor turns.

Rules (tests/train/test_sft_data.py protects them):

- Roles: client -> user, counselor -> assistant, system -> system. Every template is probed once
  (`template_caps`) for what it accepts; the conversation is adapted only where the template refuses it.
- Assistant-first dialogs (AnnoMI and KMI open with the therapist): rendered as they are when the template
  accepts an assistant-first conversation (ChatML does), and the opening counselor turn carries loss. A
  template that needs user-first (or strict user/assistant alternation) gets the opening counselor turn(s)
  folded into the first client message as context, "counselor: <opening>\\n\\nclient: <text>", without loss;
  nothing is invented. A dialog with no client turn at all cannot be rendered then and is skipped.
  Consecutive same-role messages are merged ("\\n\\n") and a system message is folded into the first user
  message only for templates that refuse them.
- Loss spans: the tokens of each counselor message's content plus the template's end-of-turn marker (e.g.
  `<|im_end|>`; trailing whitespace after it is not trained). Found by the prefix difference of
  render(messages[:k], add_generation_prompt=True) and render(messages[:k+1]) as token sequences, checked to
  be prefixes of the full rendering; where a template re-renders earlier turns (the prefix property fails),
  by character offsets of the located content in the full rendering; RenderError when neither works.
- Windows (a dialog longer than max_len): each window starts at a turn start (with the template's preamble:
  system message / default system prompt), takes as many not-yet-trained counselor turns as fit with their
  immediately preceding turn as context, then as much earlier context as fits in whole turns, then fills the
  remaining room with the tail of one more earlier turn, its text cut on the left and marked "…" (context
  only, never a loss span). Every counselor turn carries loss in exactly one window; every window has loss.
  A counselor turn too long for a window even after its preceding turn is cut to "…": the context keeps at
  most half the window, the turn is cut on the right (no end marker, so no "stop" is learned from it) and
  counted in truncated_turns. A turn whose bare context (preamble + headers) fills max_len is skipped
  (skipped_turns). A long client turn before a short counselor turn only costs context (trimmed_turns).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from jinja2 import TemplateError

from counseltune.errors import CounseltuneError

IGNORE = -100
ROLES = {"client": "user", "counselor": "assistant", "system": "system"}
ELLIPSIS = "…"
MIN_FILL_CHARS = 8  # a context fill shorter than this is noise, not context
FOLD_OPENER = "counselor: {opener}\n\nclient: {text}"
# what a chat template raises when it refuses a conversation (jinja's raise_exception is a TemplateError)
TEMPLATE_ERRORS = (TemplateError, ValueError, TypeError, KeyError, IndexError)


class RenderError(CounseltuneError, ValueError):
    """The chat template cannot render a dialog so that counselor spans are found; the message says why."""


class TokenCounts:
    """Token counts of anything with input_ids and labels (a rendered sample, a packed row)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def n_loss_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


@dataclass
class Sample(TokenCounts):
    """One training sequence: token ids, labels (-100 where no loss) and where it came from."""

    input_ids: list[int]
    labels: list[int]
    dialog_id: str = ""
    window: int = 0



@dataclass
class RenderReport:
    """Counters summed over the dialogs rendered with it (goes into the SFT stats JSON)."""

    dialogs: int = 0
    samples: int = 0
    windowed_dialogs: int = 0  # dialogs longer than max_len, cut into windows
    windows: int = 0           # samples cut from those dialogs
    truncated_turns: int = 0   # counselor turns whose loss span was cut (a single turn over max_len)
    trimmed_turns: int = 0     # context turns whose text was cut on the left to fill a window
    skipped_turns: int = 0     # counselor turns whose context alone fills max_len
    skipped_dialogs: int = 0   # dialogs without anything to train on under this template
    folded_openers: int = 0    # dialogs whose opening counselor turn became context (user-first template)
    spans_prefix: int = 0      # loss spans found by the prefix difference
    spans_offsets: int = 0     # loss spans found by the character-offset fallback

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TemplateCaps:
    """What a chat template accepts, probed once per template."""

    system: bool
    assistant_first: bool
    consecutive: bool
    end_marker: str  # the text closing an assistant turn (e.g. "<|im_end|>"), "" when there is none


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    train: bool = False

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def render_dialog(tokenizer, turns: Sequence[Mapping[str, Any]], max_len: int, dialog_id: str = "",
                  report: RenderReport | None = None) -> list[Sample]:
    """Ordered turns ({role: client|counselor|system, text}) -> samples of at most max_len tokens."""
    report = report if report is not None else RenderReport()
    caps = template_caps(tokenizer)
    report.dialogs += 1
    messages, folded = to_messages(turns, caps)
    report.folded_openers += folded
    if not any(m.train for m in messages):
        report.skipped_dialogs += 1
        return []
    samples = _Windower(tokenizer, caps, messages, max_len, report).samples()
    if not samples:
        report.skipped_dialogs += 1
    for i, sample in enumerate(samples):
        sample.dialog_id, sample.window = dialog_id, i
    report.samples += len(samples)
    return samples


def to_messages(turns: Sequence[Mapping[str, Any]], caps: TemplateCaps) -> tuple[list[Message], int]:
    """Turns -> chat messages adapted to what the template accepts; also 1 if an opener was folded, else 0."""
    messages = [Message(ROLES[t["role"]], t["text"], t["role"] == "counselor") for t in turns]
    if not caps.consecutive:
        messages = _merge_consecutive(messages)
    folded = 0
    if not caps.assistant_first:
        messages, folded = _fold_opener(messages)
    if not caps.system:
        messages = _fold_system(messages)
    while messages and messages[-1].role != "assistant":  # nothing after the last counselor turn is trained
        messages.pop()
    return messages, folded


def template_caps(tokenizer) -> TemplateCaps:
    """Probe the tokenizer's chat template once: system role, assistant-first, consecutive roles, end marker."""
    if not getattr(tokenizer, "chat_template", None):
        raise RenderError("the tokenizer has no chat_template: the base model folder must ship one")
    key = (tokenizer.chat_template, tokenizer.bos_token, tokenizer.eos_token)
    if key not in _CAPS:
        _CAPS[key] = _probe(tokenizer)
    return _CAPS[key]


def encode(tokenizer, messages: Sequence[Message]) -> tuple[list[int], list[int], int]:
    """Messages -> (input_ids, labels, spans found by the offsets fallback); loss on messages with train=True."""
    caps = template_caps(tokenizer)
    dicts = [m.as_dict() for m in messages]
    full = _render(tokenizer, dicts)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    labels = [IGNORE] * len(ids)
    targets = [k for k, m in enumerate(messages) if m.train]
    prefixes = _prefix_tokens(tokenizer, dicts, targets)
    located = None
    fallbacks = 0
    for k in targets:
        span = _prefix_span(tokenizer, ids, prefixes.get(k), messages[k].content)
        if span is None:
            located = located if located is not None else _locate(full, messages)
            span = _offset_span(full, offsets, located[k], caps.end_marker)
            fallbacks += 1
        start, end = span
        labels[start:end] = ids[start:end]
    if labels:
        labels[0] = IGNORE  # nothing precedes token 0, so it can never be predicted (and packing relies on it)
    return ids, labels, fallbacks


# ---- windows ----------------------------------------------------------------------------------------------


class _Windower:
    """Cut one dialog's messages into samples of at most max_len tokens (rules in the module docstring)."""

    def __init__(self, tokenizer, caps: TemplateCaps, messages: list[Message], max_len: int, report: RenderReport):
        n_pre = 0
        while caps.system and n_pre < len(messages) and messages[n_pre].role == "system":
            n_pre += 1
        self.tok, self.caps, self.max_len, self.report = tokenizer, caps, max_len, report
        self.pre = [replace(m, train=False) for m in messages[:n_pre]]
        self.body = messages[n_pre:]
        self.counselor = [i for i, m in enumerate(self.body) if m.train]
        self.starts = [i for i, m in enumerate(self.body) if i == 0 or caps.assistant_first or m.role == "user"]
        # content tokens bound a window's length from below: windows surely too long are never rendered
        counts = [len(x) for x in tokenizer([m.content for m in self.body], add_special_tokens=False)["input_ids"]]
        self.cum = [0]
        for n in counts:
            self.cum.append(self.cum[-1] + n)

    def samples(self) -> list[Sample]:
        if self._fits(0, len(self.body) - 1, set()):
            return [self._encode(self._window(0, len(self.body) - 1, set(self.counselor)))]
        self.report.windowed_dialogs += 1
        out: list[Sample] = []
        pos = 0
        while pos < len(self.counselor):
            a = self.counselor[pos]
            s0 = self._latest_start(a)
            if not self._fits(s0, a, {a}):
                sample = self._overlong(s0, a)
                if sample is not None:
                    out.append(sample)
                pos += 1
                continue
            e = self._last_end(pos, s0)
            s = self._first_start(s0, e)
            train = {i for i in self.counselor if a <= i <= e}
            window = self._window(s, e, train)
            p = self._previous_start(s)
            if p is not None:
                window = self._fill(p, e, train, self.max_len) or window
            out.append(self._encode(window))
            pos = bisect.bisect_right(self.counselor, e)
        self.report.windows += len(out)
        return out

    def _last_end(self, pos: int, s0: int) -> int:
        """The furthest counselor turn (from counselor[pos] on) that fits in a window starting at s0."""
        new = self.counselor[pos:]
        return new[_last_true(len(new), lambda j: self._fits(s0, new[j], set()))]

    def _first_start(self, s0: int, e: int) -> int:
        """The earliest turn start (up to s0) from which the window up to e fits."""
        earlier = self.starts[: bisect.bisect_right(self.starts, s0)]
        return earlier[_first_true(len(earlier), lambda j: self._fits(earlier[j], e, set()))]

    def _overlong(self, s0: int, a: int) -> Sample | None:
        """One counselor turn that does not fit with even its preceding turn: trim context, then cut the turn."""
        window = self._window(a, a, {a}) if s0 == a else self._partial(s0, a, {a}, 0)
        labels = encode(self.tok, window)[1]
        first = next((i for i, x in enumerate(labels) if x != IGNORE), len(labels))
        n_turn = len(labels) - first  # the window ends on this turn: its tokens run to the end
        if first >= self.max_len:
            self.report.skipped_turns += 1
            return None
        if s0 != a:
            # keep the whole turn if the context can shrink enough, else give the context half the window at most
            budget = self.max_len if first + n_turn <= self.max_len else max(first, self.max_len // 2) + n_turn
            filled = self._fill(s0, a, {a}, budget)
            if filled is None:  # not even a short tail fits: the context turn is only its header and "…"
                self.report.trimmed_turns += 1
            window = filled or window
        sample = self._encode(window)
        if sample.n_tokens > self.max_len:
            sample.input_ids, sample.labels = sample.input_ids[: self.max_len], sample.labels[: self.max_len]
            self.report.truncated_turns += 1
        return sample

    def _fill(self, p: int, e: int, train: set[int], limit: int) -> list[Message] | None:
        """pre + the longest tail of body[p] + body[p+1..e] within limit tokens; None if not even a short tail fits."""
        content = self.body[p].content
        lo = min(MIN_FILL_CHARS, len(content))
        if self._length(self._partial(p, e, train, lo)) > limit:
            return None
        k = lo + _last_true(len(content) - lo + 1, lambda j: self._length(self._partial(p, e, train, lo + j)) <= limit)
        if k < len(content):
            self.report.trimmed_turns += 1
        return self._partial(p, e, train, k)

    def _partial(self, p: int, e: int, train: set[int], keep: int) -> list[Message]:
        """pre + body[p] cut to its last `keep` characters + body[p+1..e]."""
        head = self.body[p]
        text = head.content if keep >= len(head.content) else ELLIPSIS + head.content[len(head.content) - keep:]
        return self.pre + [replace(head, content=text, train=False)] + self._span(p + 1, e, train)

    def _window(self, s: int, e: int, train: set[int]) -> list[Message]:
        return self.pre + self._span(s, e, train)

    def _span(self, s: int, e: int, train: set[int]) -> list[Message]:
        return [replace(m, train=(s + i) in train) for i, m in enumerate(self.body[s: e + 1])]

    def _fits(self, s: int, e: int, train: set[int]) -> bool:
        # a token may merge across a message boundary, hence the slack of 2 per message
        if self.cum[e + 1] - self.cum[s] - 2 * (e - s + 1) > self.max_len:
            return False
        return self._length(self._window(s, e, train)) <= self.max_len

    def _length(self, window: list[Message]) -> int:
        text = _render(self.tok, [m.as_dict() for m in window])
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def _latest_start(self, a: int) -> int:
        before = [s for s in self.starts if s < a]
        return before[-1] if before else a

    def _previous_start(self, s: int) -> int | None:
        i = bisect.bisect_left(self.starts, s)
        return self.starts[i - 1] if i > 0 else None

    def _encode(self, window: list[Message]) -> Sample:
        ids, labels, fallbacks = encode(self.tok, window)
        self.report.spans_offsets += fallbacks
        self.report.spans_prefix += sum(m.train for m in window) - fallbacks
        return Sample(ids, labels)


def _first_true(n: int, pred) -> int:
    """Smallest j in [0, n) with pred(j) for a monotone pred (False...True); pred(n-1) must hold."""
    lo, hi = 0, n - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _last_true(n: int, pred) -> int:
    """Largest j in [0, n) with pred(j) for a monotone pred (True...False); pred(0) must hold."""
    lo, hi = 0, n - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if pred(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


# ---- message adaptation -----------------------------------------------------------------------------------


def _merge_consecutive(messages: list[Message]) -> list[Message]:
    out: list[Message] = []
    for m in messages:
        if out and out[-1].role == m.role:
            out[-1] = Message(m.role, out[-1].content + "\n\n" + m.content, out[-1].train or m.train)
        else:
            out.append(m)
    return out


def _fold_opener(messages: list[Message]) -> tuple[list[Message], int]:
    """Counselor turns before the first client turn -> context inside that client message (no loss)."""
    n_sys = 0
    while n_sys < len(messages) and messages[n_sys].role == "system":
        n_sys += 1
    first_user = next((i for i in range(n_sys, len(messages)) if messages[i].role == "user"), None)
    if first_user is None:
        return [], 0
    if first_user == n_sys:
        return messages, 0
    opener = "\n\n".join(m.content for m in messages[n_sys:first_user])
    user = messages[first_user]
    folded = Message("user", FOLD_OPENER.format(opener=opener, text=user.content))
    return messages[:n_sys] + [folded] + messages[first_user + 1:], 1


def _fold_system(messages: list[Message]) -> list[Message]:
    system = [m.content for m in messages if m.role == "system"]
    rest = [m for m in messages if m.role != "system"]
    if not system:
        return rest
    first_user = next((i for i, m in enumerate(rest) if m.role == "user"), None)
    if first_user is None:
        return rest
    rest[first_user] = Message("user", "\n\n".join(system) + "\n\n" + rest[first_user].content)
    return rest


# ---- template probing and spans ---------------------------------------------------------------------------

_CAPS: dict[tuple, TemplateCaps] = {}


def _probe(tokenizer) -> TemplateCaps:
    def renders(roles: list[str]) -> bool:
        msgs = [{"role": r, "content": f"Zq{i}x"} for i, r in enumerate(roles)]
        try:
            text = _render(tokenizer, msgs)
        except TEMPLATE_ERRORS:  # any refusal (raise_exception, a missing key, ...) means "not supported"
            return False
        return all(m["content"] in text for m in msgs)

    if not renders(["user", "assistant"]):
        raise RenderError("the chat template cannot render a plain user/assistant exchange")
    system = renders(["system", "user", "assistant"])
    assistant_first = renders(["assistant", "user", "assistant"]) and (
        not system or renders(["system", "assistant", "user", "assistant"]))
    consecutive = renders(["user", "user", "assistant"]) and renders(["user", "assistant", "assistant"])
    probe = _render(tokenizer, [{"role": "user", "content": "Zq0x"}, {"role": "assistant", "content": "Zq1x"}])
    tail = probe[probe.rindex("Zq1x") + 4:].strip()
    return TemplateCaps(system, assistant_first, consecutive, tail.split()[0] if tail else "")


def _render(tokenizer, messages: list[dict[str, str]], generation: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def _prefix_tokens(tokenizer, dicts: list[dict[str, str]], targets: list[int]) -> dict[int, tuple[list[int], list[int]]]:
    """For each target k: tokens of render(messages[:k]) + generation prompt and of render(messages[:k+1])."""
    texts: list[str] = []
    kept: list[int] = []
    for k in targets:
        try:
            texts += [_render(tokenizer, dicts[:k], generation=True), _render(tokenizer, dicts[: k + 1])]
        except TEMPLATE_ERRORS:  # e.g. an empty prefix (assistant-first): this turn falls back to offsets
            continue
        kept.append(k)
    if not texts:
        return {}
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return {k: (ids[2 * i], ids[2 * i + 1]) for i, k in enumerate(kept)}


def _prefix_span(tokenizer, ids: list[int], pair, content: str) -> tuple[int, int] | None:
    """The loss span by prefix difference, or None when the prefix property does not hold for this turn."""
    if pair is None:
        return None
    before, after = pair
    start, end = len(before), len(after)
    if end <= start or ids[:start] != before or ids[:end] != after:
        return None
    while end - start > 1 and not _decode(tokenizer, ids[end - 1: end]).strip():
        end -= 1  # whitespace after the end marker (e.g. ChatML's "\n") is layout, not the answer
    if not _decode(tokenizer, ids[start:end]).lstrip().startswith(content):
        return None  # the template ignores add_generation_prompt: the diff would include the role header
    return start, end


def _locate(full: str, messages: Sequence[Message]) -> dict[int, tuple[int, int]]:
    """Character span of each trained message's content in the full rendering, searched in message order."""
    cursor, spans = 0, {}
    for i, m in enumerate(messages):
        pos = full.find(m.content, cursor)
        if pos < 0 and m.train:
            raise RenderError(
                f"the chat template renders conversation prefixes that are not prefixes of the whole conversation "
                f"and does not render counselor message {i} verbatim: cannot find its loss span "
                f"(content starts {m.content[:40]!r})")
        if pos >= 0:
            spans[i] = (pos, pos + len(m.content))
            cursor = pos + len(m.content)
    return spans


def _offset_span(full: str, offsets, chars: tuple[int, int], end_marker: str) -> tuple[int, int]:
    start_char, end_char = chars
    rest = full[end_char:]
    stripped = rest.lstrip()
    if end_marker and stripped.startswith(end_marker):
        end_char += len(rest) - len(stripped) + len(end_marker)
    hits = [i for i, (s, e) in enumerate(offsets) if e > start_char and s < end_char and e > s]
    if not hits:
        raise RenderError(f"no token covers characters {start_char}..{end_char} of the rendered conversation")
    return hits[0], hits[-1] + 1


def _decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

