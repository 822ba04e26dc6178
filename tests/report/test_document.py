"""report.html is one self-contained file, and a real headless browser renders its tables and figures."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
from PIL import Image


class Dom(HTMLParser):
    """Tables (id → rows of cell texts) and images (src) of an HTML document."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[dict] = []
        self.links: list[str] = []
        self._table = self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id", f"table{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        elif tag == "img":
            self.images.append(a)
        for key in ("href", "src"):
            if key in a and tag != "img":
                self.links.append(a[key])
        if tag == "link":
            self.links.append(a.get("href", ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse(text: str) -> Dom:
    dom = Dom()
    dom.feed(text)
    return dom


def test_html_is_self_contained(reports):
    sweep = reports["corruption"]
    text = (sweep / "report.html").read_text()
    dom = parse(text)
    assert not dom.links, f"external references: {dom.links}"
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text) and "@import" not in text
    assert len(dom.images) == len(list((sweep / "figures").glob("*.png")))
    for img in dom.images:
        assert img["src"].startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1]))) as im:
            im.verify()
        assert img["alt"]


def test_browser_renders_the_tables_and_figures(reports, browser, tmp_path):
    sweep = reports["factorial"]
    url = (sweep / "report.html").resolve().as_uri()
    out = browser("--dump-dom", url)
    assert out.returncode == 0, out.stderr[-2000:]
    dom = parse(out.stdout)
    table = pd.read_csv(sweep / "tables" / "ablation.csv")
    rows = dom.tables["ablation"]
    assert rows[0][:6] == ["dropout", "weight_decay", "n", "train acc (%)", "test acc (%)", "gap (pp)"]
    assert len(rows) == 1 + len(table)
    for cells, (_, row) in zip(rows[1:], table.iterrows()):
        assert cells[:3] == [row["dropout"], row["weight_decay"], str(row["n"])]
        assert cells[4] == f"{100 * row['test_acc_mean']:.2f} ± {100 * row['test_acc_std']:.2f}"
    assert {"ablation", "effects-baseline", "effects-factorial"} <= set(dom.tables)
    assert len(dom.images) == 2 and all(img["src"].startswith("data:image/png;base64,") for img in dom.images)

    shot = tmp_path / "screenshot.png"
    out = browser(f"--screenshot={shot}", "--window-size=1200,2000", url)
    assert shot.exists(), out.stderr[-2000:]
    with Image.open(shot) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=int)
    assert rgb.shape[:2] == (2000, 1200)
    dark = int((rgb.sum(axis=2) < 200).sum())
    # the plots' coloured lines and bands; text and table borders are grey, the baseline row pale blue.
    # (This page renders ~10,000 such pixels with its figures and ~400 with the images blanked.)
    colourful = int((rgb.max(axis=2) - rgb.min(axis=2) > 80).sum())
    assert dark > 5_000, "no text rendered"
    assert colourful > 3_000, f"figures not rendered ({colourful} coloured pixels)"
