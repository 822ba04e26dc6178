"""The report as a list of blocks, rendered twice: Markdown (``report.md``) and one self-contained HTML
file (``report.html``: inline CSS, figures embedded as base64 PNG, no external asset, opens offline)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from regbench.report import tables


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Text:
    text: str  # one paragraph; `code` and **bold** are understood


@dataclass
class Items:
    items: list[str]


@dataclass
class Code:
    text: str


@dataclass
class Table:
    id: str
    frame: pd.DataFrame
    caption: str = ""
    files: list[str] = field(default_factory=list)  # the CSV / LaTeX beside it, relative to the sweep dir


@dataclass
class Image:
    id: str
    png: Path
    rel_png: str
    rel_svg: str
    title: str
    caption: str


# ---- Markdown
def md_text(text: str) -> str:
    """Text for a markdown file, with ``<`` and ``>`` as entities: markdown viewers render inline HTML, and names,
    tags and overrides come from users (a tag ``<script>`` stays text)."""
    return str(text).replace("<", "&lt;").replace(">", "&gt;")


def to_markdown(blocks: list) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + md_text(b.text) + "\n")
        elif isinstance(b, Text):
            out.append(md_text(b.text) + "\n")
        elif isinstance(b, Items):
            out.append("".join(f"- {md_text(item)}\n" for item in b.items))
        elif isinstance(b, Code):
            out.append("```\n" + b.text.rstrip("\n") + "\n```\n")
        elif isinstance(b, Table):
            files = " · ".join(f"[{Path(f).suffix[1:].upper()}]({f})" for f in b.files)
            head = " ".join(p for p in (f"_{md_text(b.caption)}_" if b.caption else "", f"({files})" if files else "") if p)
            out.append((head + "\n\n" if head else "") + tables.markdown(b.frame))
        elif isinstance(b, Image):
            out.append(f"![{md_text(b.title)}]({b.rel_png})\n\n_{md_text(b.caption)}_ ([SVG]({b.rel_svg}))\n")
    return "\n".join(out)


# ---- HTML
CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f; margin: 0 auto;
       max-width: 1100px; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
h3 { margin-top: 1.5rem; }
code, pre { font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f4f4f6; }
code { padding: 0 .25em; border-radius: 3px; } pre { padding: .7rem 1rem; overflow-x: auto; white-space: pre-wrap; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: 13.5px; }
th, td { padding: .3rem .65rem; border-bottom: 1px solid #e3e3e7; text-align: left; white-space: nowrap; }
th { border-bottom: 2px solid #999; background: #fafafa; } td.num, th.num { text-align: right;
     font-variant-numeric: tabular-nums; }
tr.baseline td { background: #f1f6ff; } td.yes { color: #0a6b2d; font-weight: 600; } td.no { color: #999; }
.caption { color: #555; font-size: 13px; margin: .8rem 0 .2rem; } .files { font-size: 12px; color: #777; }
figure { margin: 1.2rem 0 2rem; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; margin-top: .3rem; }
.warning { background: #fff6e0; border-left: 4px solid #f0a400; padding: .5rem .9rem; }
"""


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![\w*])_([^_]+)_(?![\w*])", r"<em>\1</em>", text)


def _html_table(b: Table) -> str:
    df = b.frame
    numeric = {c: tables._numeric_column(df[c]) for c in df.columns}
    head = "".join(f'<th class="{"num" if numeric[c] else ""}">{html.escape(str(c))}</th>' for c in df.columns)
    rows = []
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            v = str(row[c])
            cls = "num" if numeric[c] else v if v in ("yes", "no") else ""
            cells.append(f'<td class="{cls}">{html.escape(v)}</td>')
        baseline = "note" in df.columns and str(row["note"]).startswith("baseline")
        rows.append(f'<tr{" class=baseline" if baseline else ""}>' + "".join(cells) + "</tr>")
    caption = f'<p class="caption">{_inline(b.caption)}</p>' if b.caption else ""
    files = (f'<p class="files">also as {", ".join(html.escape(f) for f in b.files)}</p>' if b.files else "")
    return f'{caption}<table id="{b.id}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>{files}'


def to_html(blocks: list, title: str) -> str:
    body = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Text):
            cls = ' class="warning"' if b.text.startswith("**Unfinished") or b.text.startswith("**Warning") else ""
            body.append(f"<p{cls}>{_inline(b.text)}</p>")
        elif isinstance(b, Items):
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Code):
            body.append(f"<pre>{html.escape(b.text)}</pre>")
        elif isinstance(b, Table):
            body.append(_html_table(b))
        elif isinstance(b, Image):
            data = base64.b64encode(b.png.read_bytes()).decode("ascii")
            body.append(f'<figure id="fig-{b.id}"><img src="data:image/png;base64,{data}" alt="{html.escape(b.title)}">'
                        f"<figcaption><strong>{html.escape(b.title)}.</strong> {_inline(b.caption)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
