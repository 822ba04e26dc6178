"""Build experiments/: one folder per named study from its full embedded run, and the gallery (README.md).

    python experiments/build.py OUTPUTS [STUDY ...]

OUTPUTS is the folder the studies were run from (`regbench run -m experiment=<study>` writes
``OUTPUTS/<study>/multirun``); without STUDY, every study in conf/experiment/ whose sweep dir is there and finished
is built, and the others keep what an earlier build wrote. Each study's sweep dir is copied to a scratch folder
(checkpoints left out), so the runs themselves are only read; there, the real CLI makes the tables (`regbench
results`), the report (`regbench report`) and the verdict (`regbench check`). Written per study:

    experiments/<study>/README.md    the published claim, how it was run, the report's table, the key figure, check's output
    experiments/<study>/table.md     the report's table (markdown)
    experiments/<study>/<figure>.png the report's key figure
    experiments/<study>/results.csv  one row per run (a search: trials.csv and replicate.csv)
    experiments/<study>/check.txt    `regbench check`: each claim held / not held with its numbers

and experiments/README.md, the gallery: every study with its paper, the published number, regbench's number and the
verdict, then every claim's numbers. A tuned study is reported on its final sweep; a search on its trials and its
replication. The gallery is rebuilt from every folder present (each keeps its verdict in verdict.json).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STUDIES = REPO / "conf" / "experiment"

# study → (paper, its published result) for the gallery; each study's header (Literature) says more
PUBLISHED = {
    "mnist1d_baselines": ("Greydanus & Steinbach 2024, Table 1", "test: logistic 32%, MLP 68%, CNN 94% → 56% on the shuffled sequence"),
    "label_corruption": ("Zhang et al. 2017, Fig. 1b-c", "100% train at every noise level; test error rises to 90% (chance); slower to fit"),
    "zhang2017_table1": ("Zhang et al. 2017, Table 1",
                         "crop + decay 89.05%, neither 85.75% test (100% train); random labels 100% train, 9.78% test"),
    "zhang2017_randomization": ("Zhang et al. 2017, Fig. 1a", "random labels, shuffled/random pixels, Gaussian inputs all fitted to 100% train"),
    "bn_dropout_augment": ("Ioffe & Szegedy 2015; Srivastava et al. 2014; Greydanus & Steinbach 2024", "plain MLP 68% test on MNIST-1D"),
    "bn_dropout_augment_tuned": ("DeepOBS 2019, AlgoPerf 2023 (the protocol)", "every method tuned with the same budget before comparing"),
    "adam_l2_vs_adamw": ("Loshchilov & Hutter 2019, Fig. 2", "AdamW: lower test error and a wider, more separable (lr, λ) basin"),
    "adam_l2_vs_adamw_tuned": ("Loshchilov & Hutter 2019", "decoupled weight decay generalizes better than Adam + L2"),
    "double_descent": ("Nakkiran et al. 2020, Fig. 1", "test error peaks at the interpolation threshold, then falls again"),
    "init_scale": ("He et al. 2015, §2.2; Ioffe & Szegedy 2015",
                   "Var(w) = 2/n trains a deep ReLU net, 1/n stalls; BatchNorm removes the sensitivity"),
    "lr_batch_size": ("Keskar et al. 2017; Smith & Le 2018", "larger batches generalize worse at equal epochs; equal lr/B, equal noise scale"),
    "random_search": ("Bergstra & Bengio 2012", "few hyper-parameters matter; random search finds settings as good as a grid's"),
}
# the report's figure that shows each study's question best; else the first of FIGURES the report drew
KEY_FIGURE = {"zhang2017_table1": "effects", "zhang2017_randomization": "train_loss_vs_steps", "bn_dropout_augment": "effects",
              "bn_dropout_augment_tuned": "effects", "mnist1d_baselines": "effects", "adam_l2_vs_adamw_tuned": "effects",
              "random_search": "search_history"}
FIGURES = ("test_error_vs_label_noise", "error_vs_width", "loss_vs_init_gain", "heatmap_test_acc", "search_history",
           "search_test_acc", "effects", "learning_curves")
TABLES = ("Ablation table", "Tuned protocol", "Replicated on fresh seeds", "What mattered")  # report sections kept


def regbench(*args: str) -> subprocess.CompletedProcess:
    """The real CLI, as a user types it."""
    return subprocess.run([sys.executable, "-m", "regbench", *args], cwd=REPO, capture_output=True, text=True)


FIELDS = ("Question", "Literature", "Command", "Seeds", "Design", "Expected", "Measured", "Paper scale")


def header(study: str) -> dict[str, str]:
    """The study file's header fields (Question, Literature, Command, Expected, ...) as text: a field's name in
    columns 2-12, its text from column 13 and on the indented lines below."""
    fields, current = {}, None
    for line in (STUDIES / f"{study}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        name = next((f for f in FIELDS if line.startswith(f"# {f}")), None)
        if name:
            current = name
            fields[name] = line[2 + len(name):].lstrip(" :").strip()
        elif current and line.startswith("#   "):
            fields[current] += " " + line[1:].strip()
        else:
            current = None
    return fields


def finished(sweep: Path) -> bool:
    """Every run of the sweep has finished (`regbench status` exits 0 and lists nothing running or pending)."""
    out = regbench("status", str(sweep))
    return out.returncode == 0 and not re.search(r"\b[1-9]\d* (running|interrupted|pending|not started)", out.stdout)


def sections(markdown: str, titles: tuple[str, ...]) -> str:
    """The report's sections of these titles, heading, caption and table, without links to files not copied."""
    out, keep = [], False
    for line in markdown.splitlines():
        if line.startswith("#"):
            keep = line.lstrip("#").strip() in titles
        if keep:
            out.append(re.sub(r"\s*\(\[CSV\]\([^)]*\)(?:\s*·\s*\[\w+\]\([^)]*\))*\)", "", line))
    return "\n".join(out).strip() + "\n"


def build(study: str, sweep: Path, dest: Path) -> dict:
    """experiments/<study>/ from the sweep dir ``sweep``; returns its verdict record."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "multirun"
        shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("checkpoints", "*.pt"))
        search = (copy / "search.journal").exists()
        data = copy / "final" if (copy / "tuned.json").exists() else copy
        for part in ([copy / "trials", copy / "replicate"] if search else [data]):
            out = regbench("results", str(part))
            assert out.returncode == 0, out.stderr
        out = regbench("report", str(data), "--format", "md")
        assert out.returncode == 0, out.stderr
        checked = regbench("check", str(copy))
        assert checked.returncode in (0, 1), checked.stderr
        report = (data / "report.md").read_text()

        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        if search:
            shutil.copy(copy / "trials" / "results.csv", dest / "trials.csv")
            shutil.copy(copy / "replicate" / "results.csv", dest / "replicate.csv")
        else:
            shutil.copy(data / "results.csv", dest / "results.csv")
        wanted = [KEY_FIGURE[study]] if study in KEY_FIGURE else []
        figure_dirs = [data / "figures", data] + ([copy / "replicate" / "figures"] if search else [])
        pngs = {p.stem: p for d in figure_dirs if d.is_dir() for p in d.glob("*.png")}
        figure = next((pngs[name] for name in [*wanted, *FIGURES] if name in pngs), None)
        if figure is not None:
            shutil.copy(figure, dest / figure.name)
        table = sections(report, TABLES)
        if search:  # the replication's ablation table too
            table += "\n" + sections((copy / "replicate" / "report.md").read_text(), ("Ablation table",))
        table = table.replace(str(copy), f"outputs/{study}/multirun")
        (dest / "table.md").write_text(table)
        text = checked.stdout.replace(str(copy), f"outputs/{study}/multirun")
        (dest / "check.txt").write_text(text)

    from regbench.report.claims import study_claims

    claims = study_claims(study)
    verdicts = _parse_check(text, [c["name"] for c in claims])
    fields = header(study)
    paper, published = PUBLISHED.get(study, (fields.get("Literature", ""), ""))
    held = sum(v["held"] for v in verdicts)
    record = {"study": study, "paper": paper, "published": published, "held": held, "claims": len(verdicts),
              "verdicts": verdicts, "figure": figure.name if figure is not None else None}
    (dest / "verdict.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    lines = [f"# {study}", "", f"**Question.** {fields.get('Question', '')}", "",
             f"**Literature.** {fields.get('Literature', '')}", "",
             f"**Published.** {published} ({paper}).", "",
             f"**Expected at the embedded scale** (the study's header). {fields.get('Expected', '')}", "",
             f"**Run.** `{_command(study)}`, seeds {fields.get('Seeds', '')}", "",
             f"**Verdict: {held} of {len(verdicts)} claims held**"
             + ("." if held == len(verdicts) else f"; not held: {', '.join(v['name'] for v in verdicts if not v['held'])}."),
             "", "| claim | what it says | regbench's numbers | verdict |", "|---|---|---|---|"]
    lines += [f"| `{v['name']}` | {_cell(v['says'])} | {_cell(v['summary'])} | {'held' if v['held'] else '**not held**'} |"
              for v in verdicts]
    lines += ["", "## The report's table", "", table.replace("\n## ", "\n### ").replace("\n# ", "\n### ")]
    if figure is not None:
        lines += ["## Key figure", "", f"![{figure.stem}]({figure.name})", ""]
    lines += ["## regbench check", "", f"`regbench check outputs/{study}/multirun` (exit {checked.returncode}):", "",
              "```", text.rstrip(), "```", "",
              "Files: " + ", ".join(f"[{p.name}]({p.name})" for p in sorted(dest.iterdir()) if p.name != "README.md"), ""]
    (dest / "README.md").write_text("\n".join(lines))
    return record


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # |a − b| inside a markdown table cell


def _command(study: str) -> str:
    cmd = f"regbench run -m experiment={study}"
    return cmd + (" && regbench run -m experiment=zhang2017_table1 dataset.label_noise=1.0 regularizer=none,batchnorm"
                  if study == "zhang2017_table1" else "")


def _parse_check(text: str, names: list[str]) -> list[dict]:
    """check's output as records: name, says, held, the numbers and their summary (the last line)."""
    out, current = [], None
    for line in text.splitlines()[1:-1]:
        m = re.match(r"(held    |NOT HELD)  (\S+): (.*)$", line)
        if m and m.group(2) in names:
            current = {"name": m.group(2), "says": m.group(3), "held": m.group(1) == "held    ", "numbers": []}
            out.append(current)
        elif current is not None:
            current["numbers"].append(line.strip())
    for v in out:
        v["summary"] = v["numbers"][-1] if v["numbers"] else ""
    return out


def gallery(into: Path = HERE) -> None:
    """experiments/README.md from every study folder's verdict.json."""
    records = [json.loads(p.read_text()) for p in sorted(into.glob("*/verdict.json"))]
    built = {r["study"] for r in records}
    missing = sorted(p.stem for p in STUDIES.glob("*.yaml") if p.stem not in built)
    lines = ["# experiments: the reproduced literature, checked", "",
             "One folder per named study (`conf/experiment/<study>.yaml`) from its full embedded run (MNIST-1D, 2 CPU",
             "cores): the report's table, its key figure, `results.csv`, the published claim and `regbench check`'s",
             "verdict. Each study states its expected outcomes as `claims:` in its file; `regbench check <sweep dir>`",
             "tests them against the runs (regbench/report/claims.py lists the kinds). Built by `experiments/build.py`",
             "(its docstring says how); the numbers are embedded-scale, not the papers' CIFAR-10 scale.", "",
             "| study | paper | published | regbench (embedded) | verdict |", "|---|---|---|---|---|"]
    for r in records:
        head = r["verdicts"][0] if r["verdicts"] else {"summary": ""}
        lines.append(f"| [{r['study']}]({r['study']}/README.md) | {r['paper']} | {r['published']} | "
                     f"{head['name']}: {_cell(head['summary'])} | {r['held']} of {r['claims']} held |")
    for study in missing:
        lines.append(f"| {study} | {PUBLISHED.get(study, ('', ''))[0]} | {PUBLISHED.get(study, ('', ''))[1]} | "
                     "not built yet | — |")
    lines += ["", "## Every claim", "", "| study | claim | regbench's numbers | verdict |", "|---|---|---|---|"]
    for r in records:
        lines += [f"| {r['study']} | `{v['name']}`: {_cell(v['says'])} | {_cell(v['summary'])} | "
                  f"{'held' if v['held'] else '**not held**'} |"
                  for v in r["verdicts"]]
    lines += ["", "Rebuild (or fill in the studies not built yet) after running them: "
              "`python experiments/build.py <outputs dir>` (e.g. `outputs`, where `regbench run -m experiment=<study>` "
              "writes).", ""]
    (into / "README.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outputs", type=Path, help="the folder holding <study>/multirun for each study run")
    parser.add_argument("studies", nargs="*", help="studies to build (default: every finished one found)")
    parser.add_argument("--into", type=Path, default=HERE, help="where the folders and the gallery go (default: experiments/)")
    ns = parser.parse_args(argv)
    studies = ns.studies or sorted(p.stem for p in STUDIES.glob("*.yaml"))
    for study in studies:
        sweep = ns.outputs / study / "multirun"
        if not (sweep.is_dir() and finished(sweep)):
            print(f"{study}: skipped ({sweep} is {'not finished' if sweep.is_dir() else 'not there'})")
            continue
        record = build(study, sweep, ns.into / study)
        print(f"{study}: {record['held']} of {record['claims']} claims held -> {ns.into / study}")
    gallery(ns.into)
    print(f"wrote {ns.into / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
