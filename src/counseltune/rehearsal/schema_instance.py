"""A JSON instance valid under a JSON Schema, drawn from a seeded rng: the loopback API's structured answers.

Covers the keywords the project's schemas use and the usual neighbours: type (one or a list), object with
properties / required / additionalProperties, enum, const, string min/maxLength, integer and number bounds
(inclusive and exclusive), boolean, null, array items with min/maxItems, anyOf / oneOf, allOf of objects, local
$ref ($defs, definitions), and a string pattern the hook's texts meet (tried, not built from the regex). What
the instance says is left to two hooks, so the answers read as plausible: `text(name, lo, hi, rng)` writes a
string for a property name, `pick(name, options, rng)` chooses among an enum. The result is always validated
(Draft 2020-12) before it is returned; a schema it cannot satisfy (a format, a pattern no text meets) is refused
with one line naming it, never answered with an invalid instance.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from jsonschema import Draft202012Validator

from counseltune.errors import CounseltuneError

Text = Callable[[str, int, int, random.Random], str]
Pick = Callable[[str, Sequence[Any], random.Random], Any]
UNSUPPORTED = ("format", "patternProperties", "not", "if", "dependentSchemas", "contains")
DEFAULT_MAX_CHARS = 60   # a string without maxLength: a short phrase
PATTERN_TRIES = 8        # a string with a pattern: texts drawn until one matches
MAX_EXTRA_ITEMS = 3      # an array gets minItems .. minItems + this many items (within maxItems)


class UnsupportedSchema(CounseltuneError, ValueError):
    """The schema asks for something this generator cannot produce (named in the message)."""


def plain_text(name: str, lo: int, hi: int, rng: random.Random) -> str:
    word = (name or "value").replace("_", " ")
    text = word if len(word) >= lo else word + " " + "x" * (lo - len(word) - 1)
    return text[:hi]


def first_option(name: str, options: Sequence[Any], rng: random.Random) -> Any:
    return rng.choice(list(options))


def valid_instance(schema: dict, rng: random.Random, *, text: Text = plain_text, pick: Pick = first_option) -> Any:
    """An instance of `schema`, checked against it; UnsupportedSchema when none can be made."""
    try:
        Draft202012Validator.check_schema(schema)
    except Exception as err:  # noqa: BLE001 - jsonschema's SchemaError: the request's schema is not a schema
        raise UnsupportedSchema(f"the response_format schema is not a valid JSON Schema: {str(err).splitlines()[0]}") from None
    value = _Generator(schema, rng, text, pick).make(schema, "")
    errors = sorted(Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
        raise UnsupportedSchema(f"no instance could be generated for this schema (at {where}: {errors[0].message})")
    return value


class _Generator:
    def __init__(self, root: dict, rng: random.Random, text: Text, pick: Pick) -> None:
        self.root, self.rng, self.text, self.pick = root, rng, text, pick

    def make(self, node: Any, name: str) -> Any:
        if node is True or node == {}:
            return self.text(name, 1, DEFAULT_MAX_CHARS, self.rng)
        if node is False:
            raise UnsupportedSchema(f"property {name!r} is forbidden (schema false) but required")
        for keyword in UNSUPPORTED:
            if keyword in node:
                raise UnsupportedSchema(f"the schema keyword {keyword!r} (at {name or 'the root'}) is not supported "
                                        f"by the rehearsal API")
        if "$ref" in node:
            return self.make(self._resolve(node["$ref"]), name)
        if "const" in node:
            return node["const"]
        if "enum" in node:
            return self.pick(name, node["enum"], self.rng)
        if "oneOf" in node or "anyOf" in node:
            return self._branch(node, name)
        if "allOf" in node:
            return self.make(_merge(node), name)
        kind = self._type(node)
        if kind == "object":
            return self._object(node)
        if kind == "array":
            return self._array(node, name)
        if kind == "string":
            lo = int(node.get("minLength", 0))
            hi = int(node.get("maxLength", max(lo, DEFAULT_MAX_CHARS)))
            if "pattern" not in node:
                return self.text(name, max(lo, 0), hi, self.rng)
            return self._matching(node["pattern"], name, max(lo, 0), hi)
        if kind in ("integer", "number"):
            return self._number(node, kind)
        if kind == "boolean":
            return self.rng.random() < 0.8   # most checks a judge makes pass
        if kind == "null":
            return None
        raise UnsupportedSchema(f"unknown type {kind!r} at {name or 'the root'}")

    def _matching(self, pattern: str, name: str, lo: int, hi: int) -> str:
        """A text of the hook's that matches the pattern (searched, as JSON Schema does); texts are not regex-built."""
        for _ in range(PATTERN_TRIES):
            text = self.text(name, lo, hi, self.rng)
            if re.search(pattern, text):
                return text
        raise UnsupportedSchema(f"no text for {name or 'the root'} matched its pattern {pattern!r}")

    def _type(self, node: dict) -> str:
        kind = node.get("type")
        if isinstance(kind, list):  # ["string", "null"]: a value rather than a null
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in node else "array" if "items" in node else "string"
        return kind

    def _object(self, node: dict) -> dict:
        properties = node.get("properties", {})
        extra = node.get("additionalProperties", True)
        out = {}
        # every declared property (strict structured outputs require them all anyway), then required extras
        for key in [*properties, *(k for k in node.get("required", []) if k not in properties)]:
            sub = properties.get(key, extra if isinstance(extra, dict) else {})
            out[key] = self.make(sub, key)
        return out

    def _array(self, node: dict, name: str) -> list:
        lo = int(node.get("minItems", 0))
        hi = int(node.get("maxItems", lo + MAX_EXTRA_ITEMS))
        n = self.rng.randint(min(max(lo, 1), hi), min(hi, lo + MAX_EXTRA_ITEMS))
        prefix = node.get("prefixItems", [])
        items = [self.make(prefix[i], name) if i < len(prefix) else self.make(node.get("items", {}), name)
                 for i in range(n)]
        if node.get("uniqueItems"):
            seen: list = []
            items = [v for v in items if not (v in seen or seen.append(v))]
        return items

    def _number(self, node: dict, kind: str) -> int | float:
        lo, hi = node.get("minimum"), node.get("maximum")
        if "exclusiveMinimum" in node:
            lo = node["exclusiveMinimum"] + (1 if kind == "integer" else 1e-6)
        if "exclusiveMaximum" in node:
            hi = node["exclusiveMaximum"] - (1 if kind == "integer" else 1e-6)
        lo = lo if lo is not None else (hi - 10 if hi is not None else 0)
        hi = hi if hi is not None else lo + 10
        if kind == "integer":
            lo, hi = math.ceil(lo), math.floor(hi)
            # the upper part of a rating scale: what a judge of a decent counselor mostly gives
            return self.rng.randint(lo + (hi - lo) // 3, hi) if hi - lo <= 10 else self.rng.randint(lo, hi)
        return round(self.rng.uniform(lo, hi), 3) if hi > lo else lo

    def _branch(self, node: dict, name: str) -> Any:
        branches = list(node.get("oneOf") or node.get("anyOf"))
        self.rng.shuffle(branches)
        base = {k: v for k, v in node.items() if k not in ("oneOf", "anyOf")}
        for branch in branches:
            merged = {**base, **branch} if isinstance(branch, dict) else branch
            try:
                value = self.make(merged, name)
            except UnsupportedSchema:
                continue
            if not any(True for _ in Draft202012Validator(self._rooted(node)).iter_errors(value)):
                return value
        raise UnsupportedSchema(f"no branch of the anyOf/oneOf at {name or 'the root'} could be satisfied")

    def _rooted(self, node: dict) -> dict:
        """The node with the root's $defs beside it, so its local $refs resolve when it is validated alone."""
        defs = {k: self.root[k] for k in ("$defs", "definitions") if k in self.root}
        return {**defs, **node}

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise UnsupportedSchema(f"only local $ref (#/...) is supported, got {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise UnsupportedSchema(f"$ref {ref!r} does not resolve in the schema")
            node = node[part]
        return node


def _merge(node: dict) -> dict:
    """allOf of object schemas -> one schema (properties and required united); other keywords of the last win."""
    merged: dict = {k: v for k, v in node.items() if k != "allOf"}
    for part in node["allOf"]:
        for key, value in part.items():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged[key] = value
    return merged
