"""The report of a search (:mod:`regbench.sweep.search`): what was tried, what the pruner stopped, what mattered, and
the best trial's number on fresh seeds. Read from the study itself (Optuna's journal in the sweep dir)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from regbench.errors import UserError
from regbench.report.document import Heading, Image, Table, Text, to_html, to_markdown

REPORT_FILE, FIGURE = "report.md", "figures/search_history.png"


def is_search(sweep_dir: Path) -> bool:
    from regbench.sweep.search import STUDY_FILE

    return (Path(sweep_dir) / STUDY_FILE).exists()


def load(sweep_dir: Path):
    import optuna

    from regbench.sweep.search import STUDY_NAME, storage

    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=storage(sweep_dir))
    except (KeyError, ValueError, OSError) as e:
        raise UserError(f"{Path(sweep_dir) / 'search.journal'} cannot be read as a search's study ({e}); move it away "
                        "and re-run the search's command") from None


def importances(study) -> dict[str, float] | None:
    """Each parameter's share of the objective's variance over the completed trials (Optuna's fANOVA), or None
    with fewer than two completed trials or one parameter only."""
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 2 or len(study.best_trial.params) < 2:
        return None
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return optuna.importance.get_param_importances(study, evaluator=evaluator)


def history_figure(study, path: Path, objective: str) -> None:
    """Each trial's objective (completed: dots; pruned: crosses at their last reported epoch) and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    S = optuna.trial.TrialState
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    done = [(t.number, t.value) for t in study.trials if t.state == S.COMPLETE]
    pruned = [(t.number, t.intermediate_values[max(t.intermediate_values)]) for t in study.trials
              if t.state == S.PRUNED and t.intermediate_values]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    if done:
        ax.scatter(*zip(*done), s=18, label="completed", color="C0")
        best, steps = -math.inf if maximize else math.inf, []
        for n, v in done:
            best = max(best, v) if maximize else min(best, v)
            steps.append((n, best))
        steps.append((study.trials[-1].number, best))  # the best so far runs to the last trial
        ax.step(*zip(*steps), where="post", color="C3", label="best so far")
    if pruned:
        ax.scatter(*zip(*pruned), marker="x", s=22, color="0.5", label="pruned (last reported epoch)")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.savefig(path.with_suffix(".svg"))
    plt.close(fig)


def write(sweep_dir: Path, metric: str) -> dict[str, Path]:
    """report.md (the search) and its figure in the sweep dir; the trials' and the replication's own reports."""
    import optuna

    sweep_dir = Path(sweep_dir)
    study = load(sweep_dir)
    S = optuna.trial.TrialState
    trials = study.trials
    if not trials:
        raise UserError(f"{sweep_dir}: the search has no trials yet")
    summary = {}
    if (sweep_dir / "search.json").exists():
        summary = json.loads((sweep_dir / "search.json").read_text())
    objective = summary.get("metric") or _protocol(sweep_dir).get("metric", "objective")
    history_figure(study, sweep_dir / FIGURE, objective)
    count = {s.name.lower(): sum(t.state == s for t in trials) for s in (S.COMPLETE, S.PRUNED, S.FAIL, S.RUNNING)}
    epochs = [int(t.user_attrs.get("epochs_run") or 0) for t in trials]
    stopped = sorted(int(t.user_attrs.get("epochs_run") or 0) for t in trials if t.state == S.PRUNED)
    keys = list(trials[0].params) if trials[0].params else []
    blocks = [Heading(1, f"Search: {sweep_dir}"),
              Text(f"{len(trials)} trials of {', '.join(keys)}: {count['complete']} completed, {count['pruned']} pruned, "
                   f"{count['fail']} failed, {count['running']} unfinished; {sum(epochs)} epochs trained"
                   + (f" (the pruned trials stopped after a median of {stopped[len(stopped) // 2]} epochs)" if stopped else "")
                   + f". The objective is {objective} on the validation split ({study.direction.name.lower()}); "
                   "pruned trials are listed (with the value of the last epoch they reported) but never chosen.")]
    if count["complete"]:
        b = study.best_trial
        blocks.append(Text(f"**Best trial {b.number}** ({b.user_attrs.get('run_dir')}): {objective} {b.value:.4f} with "
                           + ", ".join(f"`{k}={_fmt(v)}`" for k, v in b.params.items())))
    rep = summary.get("replicate") or {}
    if rep:
        rows = [{"recipe": "best trial" if arm == "best" else "default recipe",
                 "test_acc (mean ± std)": f"{r['test_acc_mean']:.4f}"
                 + (f" ± {r['test_acc_std']:.4f}" if r.get("test_acc_std") is not None else ""),
                 "seeds": ", ".join(map(str, r["seeds"]))} for arm, r in rep.items()]
        blocks += [Heading(2, "Replicated on fresh seeds"), Table("replicate", pd.DataFrame(rows)),
                   Text("The replication's full report: `replicate/report.md`; every trial's: `trials/report.md`.")]
    imp = importances(study) if count["complete"] else None
    blocks.append(Heading(2, "What mattered"))
    if imp:
        blocks += [Text("Each parameter's share of the objective's variance over the completed trials (fANOVA):"),
                   Table("importance", pd.DataFrame({"parameter": list(imp), "importance": [f"{v:.3f}" for v in imp.values()]}))]
    else:
        blocks.append(Text("Not enough completed trials (or parameters) for fANOVA importances."))
    blocks += [Heading(2, "History"), Image("history", sweep_dir / FIGURE, FIGURE, FIGURE.replace(".png", ".svg"),
                                            f"each trial's {objective} and the best so far",
                                            "completed trials as dots, pruned ones as crosses at their last reported epoch")]
    order = sorted(trials, key=lambda t: (t.value is None, -(t.value or 0) if study.direction.name == "MAXIMIZE" else (t.value or 0)))
    rows = [{"trial": t.number, "state": t.state.name.lower(), objective: f"{t.value:.4f}" if t.value is not None else "—",
             "epochs": t.user_attrs.get("epochs_run") or "—", **{k: _fmt(t.params.get(k)) for k in keys}} for t in order]
    blocks += [Heading(2, "Trials"), Table("trials", pd.DataFrame(rows))]
    path = sweep_dir / REPORT_FILE
    path.write_text(to_markdown(blocks))
    (sweep_dir / "report.html").write_text(to_html(blocks, f"Search: {sweep_dir}"))
    written = {"markdown": path, "html": sweep_dir / "report.html", "figure": sweep_dir / FIGURE}
    from regbench.report import write_report

    for part in ("trials", "replicate"):  # their own reports: the metric against each sampled value; the replication
        if (sweep_dir / part).is_dir():
            written.update({f"{part} {k}": v for k, v in write_report(sweep_dir / part, metric=metric).items()})
    return written


def _protocol(sweep_dir: Path) -> dict:
    from regbench.sweep.search import PROTOCOL_FILE

    try:
        return json.loads((Path(sweep_dir) / PROTOCOL_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
