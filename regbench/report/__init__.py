"""`regbench report SWEEP_DIR`: an ablation report of one sweep, written inside the sweep directory.

    report.md, report.html       the report (the HTML is self-contained: figures embedded, no network)
    tables/*.csv, tables/*.tex   ablation table, effects, time to fit: numbers (CSV) and LaTeX (booktabs)
    figures/*.png, figures/*.svg learning curves, effects, and the figures of the study the sweep is

A sweep that is still running, or had failures, gets a report of what finished, saying what did not.
Modules: :mod:`.study` (runs → configurations, baseline), :mod:`.effects` (paired or Welch CIs,
Holm-adjusted p, minimum detectable effects, factorial effects), :mod:`.tables`, :mod:`.figures`,
:mod:`.provenance`, :mod:`.document` (Markdown, HTML), :mod:`.wandb_report` (only for online W&B studies).
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

from regbench.errors import UserError
from regbench.records import Status

log = logging.getLogger("regbench.report")
FORMATS = ("md", "html")
WHY = {Status.RUNNING: "a job is training it now",
       Status.INTERRUPTED: "a checkpoint but no result: rerun the sweep command to resume it",
       Status.PENDING: "its folder exists, nothing saved yet",
       Status.DAMAGED: "its result.json cannot be read: move the file away and re-run the sweep command (only that run is "
                       "finished again)"}
SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def main(ns) -> int:
    formats = [f.strip().lower() for f in str(ns.format or "md,html").split(",") if f.strip()]
    formats = list(FORMATS) if "all" in formats else formats
    args = [str(ns.sweep_dir)]
    for flag, value, default in (("--baseline", ns.baseline, None), ("--metric", ns.metric, "test_acc"),
                                 ("--format", ns.format, "md,html")):
        if value is not None and value != default:
            args += [flag, repr(value) if " " in str(value) or "[" in str(value) else str(value)]
    try:
        unknown = [f for f in formats if f not in FORMATS]
        if unknown or not formats:
            raise UserError(f"--format {ns.format!r}: choose from {', '.join(FORMATS)} (comma-separated) or all")
        from regbench.report import search

        if search.is_search(Path(ns.sweep_dir)):  # a search's dir: its study, then its replication's report
            written = search.write(Path(ns.sweep_dir), metric=ns.metric or "test_acc")
        else:
            written = write_report(Path(ns.sweep_dir), baseline=ns.baseline, metric=ns.metric or "test_acc",
                                   formats=formats, report_args=args)
    except UserError as e:
        print(f"regbench: error: {e}", file=sys.stderr)
        return 2
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


def write_report(sweep_dir: Path, baseline: str | None = None, metric: str = "test_acc",
                 formats=FORMATS, report_args: list[str] | None = None) -> dict[str, Path]:
    """Write the report files into ``sweep_dir`` and return {kind: path}."""
    from regbench.report import document as doc
    from regbench.report import effects, provenance
    from regbench.report.study import Study
    from regbench.sweep.results import METRICS, read_tuned

    if metric not in METRICS:
        raise UserError(f"--metric {metric!r} is not a result metric; choose one of: {', '.join(METRICS)}")
    sweep_dir = Path(sweep_dir)
    study = Study(sweep_dir, baseline)
    r = Report(study, metric, sweep_dir, effects.versus_baseline(study, metric), effects.factorial(study, metric))
    r.save_tables(read_tuned(sweep_dir))
    r.draw_figures()
    r.prov = provenance.collect(study, report_args)
    r.upload()
    blocks = r.document()
    written = {"tables": r.table_dir, "figures": r.figure_dir}
    if "md" in formats:
        written["markdown"] = sweep_dir / "report.md"
        written["markdown"].write_text(doc.to_markdown(blocks))
    if "html" in formats:
        written["html"] = sweep_dir / "report.html"
        written["html"].write_text(doc.to_html(blocks, f"{study.name}: regbench report"))
    return written


ABLATION_CAPTION = ("Mean ± std over seeds of the completed runs (n). Accuracies in %; gap = train − test accuracy, "
                    "in percentage points. One column per factor: yes/no per regularizer, else its value.")


class Report:
    """One report as it is made: its tables (numbers and text, saved as csv and tex), its figures (drawn, or why
    not), provenance and the W&B line, then the document's blocks, a section per method."""

    def __init__(self, study, metric: str, sweep_dir: Path, vs_base: list, factorial: list):
        self.study, self.metric, self.sweep_dir = study, metric, sweep_dir
        self.vs_base, self.factorial = vs_base, factorial
        self.table_dir, self.figure_dir = sweep_dir / "tables", sweep_dir / "figures"
        self.saved: dict = {}  # table name → its numbers (for the W&B report)
        self.files: dict[str, list[str]] = {}  # table name → its csv and tex, relative to the sweep dir
        self.text: dict = {}  # table name → its text form
        self.tuned: dict | None = None
        self.drawn: list = []
        self.broken: list[str] = []
        self.prov: dict = {}
        self.wandb_line = "not uploaded: no run of this sweep logged to W&B online (tables and figures stay in the sweep directory)"

    @property
    def all_effects(self) -> list:
        return self.vs_base + self.factorial

    def save_tables(self, tuned: dict | None) -> None:
        from regbench.report import tables

        self.table_dir.mkdir(parents=True, exist_ok=True)
        study, metric = self.study, self.metric
        self._save("ablation", *tables.ablation(study, metric), f"{study.name}: {ABLATION_CAPTION}")
        if self.all_effects:
            self._save("effects", *tables.effects_table(self.all_effects, metric), f"{study.name}: effects on {metric}")
        if "dataset.label_noise" in study.factors or "dataset.input_corruption" in study.factors:
            self._save("time_to_fit", *tables.fit_table(study), f"{study.name}: time to fit")
        if tuned:
            self.tuned = tuned
            self._save("tuning", *tables.tuning_table(study, tuned, metric), f"{study.name}: the tuned protocol's choices")

    def _save(self, name: str, numbers, text, caption: str) -> None:
        from regbench.report import tables

        numbers.to_csv(self.table_dir / f"{name}.csv", index=False)
        (self.table_dir / f"{name}.tex").write_text(tables.latex(text, caption))
        self.saved[name], self.text[name] = numbers, text
        self.files[name] = [f"tables/{name}.csv", f"tables/{name}.tex"]

    def draw_figures(self) -> None:
        """Each figure; one that cannot be drawn is reported, the rest of the report goes on."""
        from regbench.report import figures

        for what, draw in (("learning curves", lambda: figures.learning_curves(self.study, self.figure_dir)),
                           ("effects", lambda: figures.effects_plot(self.all_effects, self.metric, self.figure_dir)),
                           ("study figures", lambda: figures.study_figures(self.study, self.metric, self.figure_dir))):
            try:
                self.drawn += draw()
            except Exception as e:  # noqa: BLE001 - a report with one figure missing beats no report
                log.warning("the %s could not be drawn:\n%s", what, traceback.format_exc())
                self.broken.append(f"{what}: {type(e).__name__}: {e}")
        _forget_stale_figures(self.figure_dir, self.drawn)

    def upload(self) -> None:
        """To the study's W&B project, when its runs logged online; no network must not lose the local report."""
        from regbench.report import wandb_report

        target = wandb_report.online_target(self.study.configs)
        if not target:
            return
        baseline = self.study.baseline.label if self.study.baseline else None
        try:
            url = wandb_report.upload(target, self.saved, self.drawn, {"sweep_dir": str(self.sweep_dir), "metric": self.metric,
                                                                        "baseline": baseline}, self.sweep_dir)
            self.wandb_line = f"uploaded to the report run {url} (project {target['project']}, group {target['group']}, job_type report)"
        except Exception as e:  # noqa: BLE001
            self.wandb_line = f"upload to W&B failed ({type(e).__name__}: {e}); the local files are complete"

    def document(self) -> list:
        blocks = self._summary()
        if self.tuned:
            blocks += _tuning_blocks(self.tuned, self.text["tuning"], self.files["tuning"])
        return (blocks + self._unfinished_warning() + self._ablation() + self._effects() + self._figures()
                + self._incomplete() + self._provenance())

    def _summary(self) -> list:
        from regbench.report import document as doc

        study, counts = self.study, self.prov["counts"]
        status = ", ".join(f"{n} {s}" for s, n in counts.items())
        return [doc.Heading(1, f"{study.name}: ablation report"),
                doc.Text(f"Sweep `{self.sweep_dir}`: {len(study.conditions)} configurations, {sum(counts.values())} runs "
                         f"({status}). Factors: {', '.join(f'`{f}`' for f in study.factors) or 'none (one configuration)'}. "
                         f"Baseline: **{study.baseline.label if study.baseline else '—'}** ({study.baseline_note}).")]

    def _unfinished_warning(self) -> list:
        from regbench.report import document as doc

        counts = self.prov["counts"]
        total, completed = sum(counts.values()), counts.get(Status.COMPLETED, 0)
        if not total - completed:
            return []
        what = [f"{n} {s}" for s, n in counts.items() if s != Status.COMPLETED]
        return [doc.Text(f"**Unfinished or incomplete sweep**: {completed} of {total} runs completed; "
                         f"{', '.join(what)}. Every number below uses completed runs only; see "
                         "_Runs that did not complete_.")]

    def _ablation(self) -> list:
        from regbench.report import document as doc

        return [doc.Heading(2, "Ablation table"),
                doc.Table("ablation", self.text["ablation"], ABLATION_CAPTION, self.files["ablation"])]

    def _effects(self) -> list:
        from regbench.report import document as doc
        from regbench.report.effects import factorial_design, unit

        metric, blocks = self.metric, [doc.Heading(2, f"Effects on {self.metric}")]
        if self.vs_base:
            blocks += [doc.Heading(3, f"Against the baseline ({self.study.baseline.label})"),
                       doc.Text(f"Difference of the mean {metric} of each configuration and the baseline"
                                + (", in percentage points" if unit(metric)[1] == "pp" else "")
                                + ", with a 95% confidence interval over seeds (paired by seed where the seeds line up, "
                                "else Welch), its p, the Holm-adjusted p and the minimum detectable effect (legend below the "
                                "table); * marks p (Holm) < 0.05. With one seed there is no interval.")]
            blocks += _effects_blocks("effects-baseline", self.vs_base, metric, self.files.get("effects", []))
        else:
            blocks.append(doc.Text("One configuration only: nothing to compare with a baseline."))
        if self.factorial:
            design = factorial_design(self.study)
            blocks += [doc.Heading(3, f"2{str(len(design)).translate(SUPERSCRIPT)} factorial design: main effects and two-way interactions"),
                       doc.Text("Main effect: mean over the configurations with the factor at its high level minus the mean "
                                "with it low (low = the baseline's level). Interaction A × B: the difference of differences "
                                "[A+B+ − A−B+] − [A+B− − A−B−], averaged over the other factors; 0 when the effects add up, "
                                "negative when the pair does less than the sum of its parts. 95% CIs paired by seed when "
                                "every cell ran the same seeds, else Welch–Satterthwaite; p values Holm-adjusted over these "
                                "effects. Levels: " + "; ".join(f"{c}: {lo} → {hi}" for c, (lo, hi) in design.items()) + "."),
                       *_effects_blocks("effects-factorial", self.factorial, metric)]
        return blocks + [_image(f, self.sweep_dir) for f in self.drawn if f.name == "effects"]

    def _figures(self) -> list:
        from regbench.report import document as doc
        from regbench.sweep.results import FIT_ACC

        drawn, sweep_dir = self.drawn, self.sweep_dir
        blocks = [doc.Heading(2, "Learning curves")]
        blocks += [_image(f, sweep_dir) for f in drawn if f.name.startswith("learning_curves")]
        study_figs = [f for f in drawn if f.name != "effects" and not f.name.startswith("learning_curves")]
        fit = self.text.get("time_to_fit")
        if study_figs or fit is not None:
            blocks.append(doc.Heading(2, "Study figures"))
            blocks += [_image(f, sweep_dir) for f in study_figs]
        if fit is not None:
            blocks += [doc.Heading(3, "Time to fit the training set"),
                       doc.Table("time-to-fit", fit, f"First epoch (and step) whose training accuracy reached "
                                                     f"{FIT_ACC:.0%}, mean ± std over the seeds that did; "
                                                     "'not fitted' when none did within the run.", self.files["time_to_fit"])]
        if self.broken:
            blocks += [doc.Heading(3, "Figures that could not be drawn"), doc.Items(self.broken)]
        return blocks

    def _incomplete(self) -> list:
        from regbench.report import document as doc

        prov = self.prov
        failed, unfinished, never = prov["failed"], prov["unfinished"], prov["never_started"]
        if not (failed or unfinished or never or prov["notes"]):
            return []
        items = [f"**{s}**: `{d}`" + (f" — {err}" if err else "") for d, s, err in failed]
        items += [f"**{s}** ({WHY.get(s, 'no result.json yet')}): `{d}`" for d, s in unfinished]
        items += [f"**not started**: `{job}`" for job in never]
        items += prov["notes"]
        return [doc.Heading(2, "Runs that did not complete"), doc.Items(items)]

    def _provenance(self) -> list:
        from regbench.report import document as doc
        from regbench.report import provenance

        prov = self.prov
        code = [f"regbench {v}, commit {c}: {n} run{'s' if n > 1 else ''}" for (v, c), n in prov["code"].most_common()]
        if len(prov["code"]) > 1:
            code[0] = "**Warning: the runs come from different code versions.** " + code[0]
        devices = ", ".join(f"{d} ({n} runs)" for d, n in prov["devices"].most_common()) or "unknown"
        started, first, last = prov["started"], prov["finished_first"], prov["finished_last"]
        return [doc.Heading(2, "Provenance"),
                doc.Text("The sweep was run with:" if prov["commands"] else
                         "No `multirun.yaml` in the sweep directory (single runs, or a sampling sweeper such as Optuna, "
                         "leave none); each run's overrides are in its `.hydra/overrides.yaml`."),
                *([doc.Code("\n".join(prov["commands"]))] if prov["commands"] else []),
                doc.Items([
                    "code of the runs (result.json): " + ("; ".join(code) or "no finished run"),
                    f"runs started {provenance.when(started)}; finished between {provenance.when(first)} and "
                    f"{provenance.when(last)}" + (f" ({provenance.duration(started, last)})" if started and last else ""),
                    f"training hardware (result.json): {devices}",
                    f"report written {provenance.when(prov['generated'])} by regbench {prov['report_code'][0]} "
                    f"(commit {prov['report_code'][1]}) on {prov['machine']}: `{prov['report_command']}`",
                    f"W&B: {self.wandb_line}",
                ])]


MANIFEST = ".report-figures"  # the figures the last report wrote, so a re-run removes those it no longer draws


def _forget_stale_figures(figure_dir: Path, drawn: list) -> None:
    manifest = figure_dir / MANIFEST
    now = {p.name for f in drawn for p in (f.png, f.svg)}
    if manifest.exists():
        for name in set(manifest.read_text().split()) - now:
            (figure_dir / name).unlink(missing_ok=True)
    if drawn:
        manifest.write_text("\n".join(sorted(now)) + "\n")


def _tuning_blocks(tuned: dict, text, files: list[str]) -> list:
    """The tuned protocol's section: how each arm's values were chosen, and the choices."""
    from regbench.report import document as doc

    space = "; ".join(f"`{k}` ∈ {v}" if isinstance(v, list) else f"`{k}` {'log-' if v.get('log', True) else ''}uniform "
                      f"in [{v['low']}, {v['high']}]" for k, v in tuned["space"].items())
    return [doc.Heading(2, "Tuned protocol"),
            doc.Text(f"Every arm was tuned with the same budget before this table was measured: {tuned['budget']} "
                     f"candidate(s) ({space}) × tuning seeds {', '.join(map(str, tuned['tuning_seeds']))}, each arm's "
                     f"choice the best mean `{tuned['metric']}` on the validation split over the tuning seeds "
                     "(`../tuning`), then rerun over the seeds below (this sweep). The tuned keys are each arm's "
                     "recipe, not factors."),
            doc.Table("tuning", text, "Per arm: the chosen values, their validation score over the tuning seeds, "
                                      "the budget, and the final test metric over the study's seeds.", files)]


def _effects_blocks(table_id: str, effects: list, metric: str, files: list[str] | None = None) -> list:
    """An effects table, its legend (test, Holm family, MDE) and, when some effect rests on too few seeds, a warning."""
    from regbench.report import document as doc
    from regbench.report import tables

    warning = tables.few_seeds_warning(effects)
    return [doc.Table(table_id, tables.effects_table(effects, metric)[1], "", files or []),
            doc.Text(tables.effects_legend(effects, metric)), *([doc.Text(warning)] if warning else [])]


def _image(fig, sweep_dir: Path):
    from regbench.report import document as doc

    return doc.Image(fig.name, fig.png, str(fig.png.relative_to(sweep_dir)), str(fig.svg.relative_to(sweep_dir)),
                     fig.title, fig.caption)
