"""Every figure is a valid, non-empty image; each study gets its own figures."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pandas as pd
import pytest
from PIL import Image


STUDY_FIGURES = {
    "factorial": {"learning_curves", "effects"},
    "corruption": {"learning_curves", "effects", "train_loss_vs_steps", "test_error_vs_label_noise",
                   "time_to_fit_vs_label_noise"},
    "width_init": {"learning_curves", "effects", "error_vs_width", "loss_vs_init_gain"},
    # 8 configurations: one learning-curve panel each instead of 8 overlaid lines
    "adam_l2_vs_adamw": {"learning_curves_loss", "learning_curves_acc", "effects", "heatmap_test_acc"},
    "unfinished": {"learning_curves", "effects"},
}


@pytest.mark.parametrize("name", list(STUDY_FIGURES))
def test_every_figure_is_a_valid_nonempty_png_and_svg(reports, name):
    figures = reports[name] / "figures"
    stems = {p.stem for p in figures.glob("*.png")}
    assert stems == STUDY_FIGURES[name]
    for stem in stems:
        png, svg = figures / f"{stem}.png", figures / f"{stem}.svg"
        assert png.stat().st_size > 5_000, png
        with Image.open(png) as im:
            im.verify()
        with Image.open(png) as im:
            assert im.format == "PNG" and min(im.size) >= 100
            colors = im.convert("RGB").getcolors(maxcolors=1 << 20)
            assert colors is None or len(colors) > 20, f"{png} looks blank"
        root = ET.parse(svg).getroot()
        assert root.tag.endswith("svg") and len(list(root.iter())) > 50
    text = (reports[name] / "report.md").read_text()
    assert "could not be drawn" not in text
    for stem in stems:
        assert f"](figures/{stem}.png)" in text


def test_time_to_fit_says_not_fitted(reports):
    table = pd.read_csv(reports["corruption"] / "tables" / "time_to_fit.csv")
    assert (table["n"] == 2).all()
    # two epochs on 100 examples fit nothing: every configuration says so rather than showing a number
    assert (table["fitted"] == 0).all() and table["epochs_to_fit_mean"].isna().all()
    assert "not fitted (0 of 2)" in (reports["corruption"] / "report.md").read_text()
