"""`regbench report` on every embedded study (conf/experiment/*.yaml), each run shrunk through the real CLI.

Slow (about 20 s per study on two cores): `make test-slow` and CI run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from helpers import REPO
from PIL import Image

from regbench.report import write_report

STUDIES = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
SHRINK = ["debug=tiny", "trainer.max_epochs=2",
          "seed=0"]  # one seed: the command line's fixed value replaces the study's seed axis
EXTRA = {"random_search": ["search.n_trials=6", "search.replicate_seeds=[1]"]}
#: The study figures each embedded study must get (besides learning curves and effects).
FIGURES = {
    "zhang2017_randomization": {"train_loss_vs_steps", "test_error_vs_label_noise", "time_to_fit_vs_label_noise"},
    "label_corruption": {"train_loss_vs_steps", "test_error_vs_label_noise", "time_to_fit_vs_label_noise"},
    "double_descent": {"error_vs_width"},
    "adam_l2_vs_adamw": {"heatmap_test_acc"},
    "init_scale": {"loss_vs_init_gain"},
    "random_search": {"search_test_acc"},
}


@pytest.mark.slow
@pytest.mark.parametrize("study", STUDIES)
def test_report_on_each_embedded_study(study, tmp_path):
    sweep = tmp_path / study
    out = subprocess.run([sys.executable, "-m", "regbench", "run", "-m", f"experiment={study}", *SHRINK,
                          *EXTRA.get(study, []), f"hydra.sweep.dir={sweep}"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=900, env=os.environ.copy())
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    if study == "random_search":  # a search's own report; then the trials' ablation report, checked as every study's
        from regbench.report import search

        top = search.write(sweep, metric="test_acc")
        assert "## What mattered" in top["markdown"].read_text() and top["figure"].stat().st_size > 5_000
        assert (sweep / "replicate" / "report.md").exists() and (sweep / "trials" / "report.md").exists()
        sweep = sweep / "trials"
    written = write_report(sweep)
    text = written["markdown"].read_text()
    assert "could not be drawn" not in text and "## Ablation table" in text and "## Provenance" in text
    assert written["html"].stat().st_size > 10_000

    results = [json.loads(p.read_text()) for p in sweep.glob("**/result.json")]
    completed = [r for r in results if r["status"] == "completed"]
    table = pd.read_csv(sweep / "tables" / "ablation.csv")
    assert table["n"].sum() == len(completed)
    assert table["test_acc_mean"].mul(table["n"]).sum() == pytest.approx(sum(r["test_acc"] for r in completed))
    (sweep / "tables" / "ablation.tex").read_text().index("\\begin{tabular}")

    pngs = {p.stem: p for p in (sweep / "figures").glob("*.png")}
    assert FIGURES.get(study, set()) <= set(pngs), f"{study}: study figures missing"
    assert any(s.startswith("learning_curves") for s in pngs)
    for path in pngs.values():
        assert path.stat().st_size > 5_000 and path.with_suffix(".svg").stat().st_size > 5_000
        with Image.open(path) as im:
            im.verify()
