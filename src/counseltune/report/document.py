"""A report as data (headings, paragraphs, tables, images), rendered to Markdown or to standalone HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Union


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[object]]


@dataclass(frozen=True)
class Alert:
    """A table cell that needs attention (e.g. a safety rate below its threshold): red in HTML, marked in Markdown."""

    value: object


@dataclass(frozen=True)
class Greyed:
    """A table cell that is not a result (e.g. no interval with too few dialogs): grey in HTML, italic in Markdown."""

    value: object


@dataclass
class Image:
    path: str  # relative to the report file
    alt: str


Block = Union[Paragraph, Table, Image]


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)

    def to_markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for section in self.sections:
            out += [f"## {section.title}", ""]
            for block in section.blocks:
                out += _markdown(block) + [""]
        return "\n".join(out).rstrip() + "\n"

    def to_html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for section in self.sections:
            body.append(f"<h2>{html.escape(section.title)}</h2>")
            body += [_html(block) for block in section.blocks]
        style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
                 "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem;"
                 "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
                 "td.alert{color:#b00020;background:#fdecea;font-weight:bold}td.greyed{color:#888;font-style:italic}")
        return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(self.title)}</title>"
                f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _cell(value: object) -> str:
    if isinstance(value, (Alert, Greyed)):
        return _cell(value.value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _markdown(block: Block) -> list[str]:
    if isinstance(block, Paragraph):
        return [block.text]
    if isinstance(block, Image):
        return [f"![{block.alt}]({block.path})"]
    escape = lambda v: _markdown_cell(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(escape(h) for h in block.header) + " |", "|" + "---|" * len(block.header)]
    lines += ["| " + " | ".join(escape(v) for v in row) + " |" for row in block.rows]
    return lines


def _markdown_cell(value: object) -> str:
    if isinstance(value, Greyed):
        return f"*{_cell(value)}*"
    return f"**{_cell(value)}** (!)" if isinstance(value, Alert) else _cell(value)


def _html_cell(value: object) -> str:
    flagged = ' class="alert"' if isinstance(value, Alert) else ' class="greyed"' if isinstance(value, Greyed) else ""
    return f"<td{flagged}>{html.escape(_cell(value))}</td>"


def _html(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Image):
        return f"<img src=\"{html.escape(block.path)}\" alt=\"{html.escape(block.alt)}\">"
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block.header)
    rows = "".join("<tr>" + "".join(_html_cell(v) for v in row) + "</tr>" for row in block.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
