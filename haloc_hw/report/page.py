"""The one HTML page skeleton every haloc-hw report uses, and the blocks it is built from.

A report is a list of :class:`Block` (headings, paragraphs, tables, images, preformatted
text) rendered once to HTML here (and to Markdown by :mod:`haloc_hw.report.markdown`).
Images are either linked (a file name beside the page) or embedded as ``data:`` URIs, so a
page can be one self-contained file that opens anywhere, e-mail included. The helpers only
need the standard library; matplotlib is imported only by :func:`figure_data_uri`.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

#: One style sheet for every page; numbers are right-aligned (cells of class ``num``).
CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:3px 8px;"
       "text-align:left}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}"
       "img{max-width:100%;border:1px solid #eee}figcaption{font-style:italic;color:#555;margin-bottom:1.5em}"
       "pre{background:#f7f7f7;padding:0.6em;overflow-x:auto;font-size:0.85em}")

_NUMBER = re.compile(r"^[-+−]?[\d.,]+(e[-+]?\d+)?\s*(%|[a-zµ·]*|x)?$", re.IGNORECASE)


@dataclass
class Block:
    """One piece of a report: ``kind`` is heading | text | table | image | pre.

    ``image`` is a file name (linked) or a ``data:`` URI (embedded); ``text`` is the
    heading, the paragraph, the image caption or the preformatted text.
    """

    kind: str
    text: str = ""
    level: int = 2
    rows: list[list[str]] = field(default_factory=list)
    image: str = ""


def esc(value: Any) -> str:
    """``value`` as HTML text (quotes escaped too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def _is_number(text: str) -> bool:
    return bool(text) and text != "-" and bool(_NUMBER.match(text.strip()))


def table_html(rows: Sequence[Sequence[Any]]) -> str:
    """A table whose first row is the header; cells that read as numbers are right-aligned."""
    if not rows:
        return ""
    head = "".join(f"<th>{esc(v)}</th>" for v in rows[0])
    body = []
    for row in rows[1:]:
        cells = "".join(f"<td class=\"num\">{esc(v)}</td>" if _is_number(str(v)) else f"<td>{esc(v)}</td>"
                        for v in row)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure_html(src: str, caption: str) -> str:
    """An image with its caption; ``src`` is a file name or a ``data:`` URI."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure><img src=\"{esc(src)}\" alt=\"{esc(caption)}\">{cap}</figure>"


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def file_data_uri(path: Path) -> str:
    """A PNG file as a ``data:`` URI (so the page needs no file beside it)."""
    return png_data_uri(Path(path).read_bytes())


def figure_data_uri(fig: Any, *, dpi: float | None = None) -> str:
    """A matplotlib figure as an embedded PNG, trimmed to its drawn area."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or "figure", bbox_inches="tight")
    return png_data_uri(buf.getvalue())


def embed_images(blocks: Sequence[Block], folder: Path) -> list[Block]:
    """``blocks`` with every linked image replaced by its file as a ``data:`` URI.

    Image names are relative to ``folder``; an absolute path is read as it is.
    """
    out = []
    for b in blocks:
        if b.kind == "image" and b.image and not b.image.startswith("data:"):
            b = replace(b, image=file_data_uri(folder / b.image))
        out.append(b)
    return out


def block_html(b: Block) -> str:
    if b.kind == "heading":
        return f"<h{b.level}>{esc(b.text)}</h{b.level}>"
    if b.kind == "text":
        return f"<p>{esc(b.text)}</p>"
    if b.kind == "image":
        return figure_html(b.image, b.text)
    if b.kind == "table":
        return table_html(b.rows)
    if b.kind == "pre":
        return f"<pre>{esc(b.text)}</pre>"
    raise ValueError(f"unknown block kind {b.kind!r}")


def page_html(title: str, body: Sequence[str]) -> str:
    """The page skeleton around already rendered ``body`` parts."""
    head = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body>")
    return "\n".join([head, *body, "</body></html>"]) + "\n"


def render_html(blocks: Sequence[Block], title: str) -> str:
    """The whole page of ``blocks``."""
    return page_html(title, [block_html(b) for b in blocks])


__all__ = ["CSS", "Block", "block_html", "embed_images", "esc", "figure_data_uri", "figure_html", "file_data_uri",
           "page_html", "png_data_uri", "render_html", "table_html"]
