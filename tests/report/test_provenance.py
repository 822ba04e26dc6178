"""Provenance: the command, code version, dates and hardware; an unfinished sweep says what is missing."""

from __future__ import annotations

import re

import pandas as pd

def test_provenance_names_command_code_dates_and_hardware(reports, sweep_runs):
    sweep = reports["factorial"]
    text = (sweep / "report.md").read_text()
    provenance = text.split("## Provenance", 1)[1]
    assert ("regbench run -m seed=0,1,2 'regularizer=[],[dropout],[weight_decay],[dropout,weight_decay]' model=mlp "
            "debug=tiny trainer.max_epochs=2") in provenance
    assert f"hydra.sweep.dir={sweep}" in provenance
    results = [r["result"] for r in sweep_runs(sweep)]
    commits = {r["git_commit"] for r in results}
    assert len(commits) == 1 and f"regbench {results[0]['regbench_version']}, commit {commits.pop()}: 12 runs" in provenance
    assert "training hardware (result.json): cpu (12 runs)" in provenance
    first = min(r["finished_at"] for r in results)[:10]
    assert f"finished between {first}" in provenance and "runs started" in provenance
    assert "CPUs, Python" in provenance and "`regbench report " in provenance
    assert "W&B: not uploaded" in provenance
    assert "## Runs that did not complete" not in text and "Unfinished" not in text


def test_unfinished_sweep_reports_what_is_missing(reports):
    sweep = reports["unfinished"]
    text = (sweep / "report.md").read_text()
    # the killed run is "interrupted" (a checkpoint, no live job) or, to older run tables, "running"
    assert re.search(r"\*\*Unfinished or incomplete sweep\*\*: 9 of 12 runs completed; "
                     r"1 failed, 1 (interrupted|running), 1 not started\.", text)
    missing = text.split("## Runs that did not complete", 1)[1].split("##", 1)[0]
    assert "**failed**: `" in missing and "regularizer=[],seed=1" in missing and "RuntimeError: out of memory" in missing
    assert re.search(r"\*\*(interrupted|running)\*\* \(.*\): `[^`]*regularizer=\[dropout\],seed=0", missing)
    assert re.search(r"\*\*not started\*\*: `[^`]*seed=2", missing) and "[dropout,weight_decay]" in missing
    table = pd.read_csv(sweep / "tables" / "ablation.csv", keep_default_na=False)
    assert list(table["n"]) == [2, 2, 3, 2]
    assert list(table["note"])[0] == "baseline, 1 failed" and list(table["note"])[2] == ""
    assert re.fullmatch(r"1 (interrupted|running)", table["note"][1]) and table["note"][3] == "1 not started"
