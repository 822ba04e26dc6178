"""The tuned protocol: every arm of a study gets the same tuning budget, then its winner reruns over the seeds.

One learning rate for every arm is not a fair ablation: adding dropout or BatchNorm moves the best rate.
A study whose config has a search space (``tune.space``) runs, from one `regbench run -m` command:

1. **Tuning** (``<sweep dir>/tuning``): every arm (each configuration of the factors the study varies,
   seed aside) × every candidate of the search space × the tuning seeds ``tune.seeds``. The candidates
   are a grid (each key a list of values: their product) or ``tune.budget`` random draws (a key given as
   ``{low, high, log}``), the same candidates for every arm: an equal budget.
2. **Selection**: per arm, the candidate with the best ``tune.metric`` on the validation split, averaged
   over the tuning seeds (a diverged or failed run scores worst). Written to ``<sweep dir>/tuned.json``.
3. **Final** (``<sweep dir>/final``): each arm with its chosen values over the study's seeds; this is the
   sweep a report compares (``regbench report <sweep dir>/final``: the chosen values, the budget and
   the final test metric per arm).

Both sweeps are ordinary sweeps, launched by Hydra with the command's launcher and trained stacked
where they can: finished runs are skipped, so after an interruption the same command continues.
The tuning seeds default to 100 and 101, apart from the study's seeds, so that the final numbers are
not measured on the seeds they were selected on.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from regbench.errors import ConfigError, UserError
from regbench.sweep.results import TUNED_FILE
from regbench.sweep.search import override_value

METRICS = {"val_acc": max, "val_loss": min}
#: Top-level keys a search space cannot name.
UNTUNABLE = ("seed", "tune", "hydra", "name", "resume", "stack")
#: The tuned protocol's settings, written into its sweep dir when it starts: the same dir never mixes two studies.
PROTOCOL_FILE = ".regbench-tune.json"


@dataclass
class Tuning:
    space: dict  # key → list of values (grid) or {low, high, log} (random draws)
    budget: int  # candidates per arm
    seeds: list[int]
    metric: str
    sampler_seed: int

    @property
    def keys(self) -> list[str]:
        return list(self.space)


def tuning_of(cfg: DictConfig) -> Tuning | None:
    """The study's tuning settings, checked (one-line ConfigError), or None without a search space."""
    node = cfg.get("tune")
    if not node or not node.get("space"):
        return None
    space = OmegaConf.to_container(node.space, resolve=True) if OmegaConf.is_config(node.space) else node.space
    from regbench.sweep.search import check_space

    check_space("tune.space", space, cfg, UNTUNABLE, verb="tuned")  # the search's own check: one grammar for both
    grid = all(isinstance(s, list) for s in space.values())
    budget = node.get("budget")
    if grid:
        size = math.prod(len(s) for s in space.values())
        if budget not in (None, size):
            raise ConfigError(f"tune.budget={budget}: a grid's budget is its size, {size} (leave tune.budget=null)")
        budget = size
    elif not (isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1):
        raise ConfigError(f"tune.budget={budget!r}: random search needs a whole number of draws ≥ 1")
    seeds = node.get("seeds")
    seeds = list(seeds) if OmegaConf.is_list(seeds) or isinstance(seeds, list) else seeds
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ConfigError(f"tune.seeds={seeds!r}: a non-empty list of seeds ≥ 0")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"tune.seeds={seeds!r}: each seed once (a repeated seed is the same run, counted twice)")
    if node.get("metric") not in METRICS:
        raise ConfigError(f"tune.metric={node.get('metric')!r}: choose one of {', '.join(METRICS)} (chosen on validation)")
    return Tuning(space, budget, seeds, str(node.metric), int(node.get("sampler_seed", 0)))


def candidates(t: Tuning) -> list[dict]:
    """The settings every arm tries: the grid's points in order, or ``budget`` seeded (log-)uniform draws of the
    search engine (:func:`regbench.sweep.search.draws`)."""
    if all(isinstance(s, list) for s in t.space.values()):
        return [dict(zip(t.keys, point)) for point in itertools.product(*t.space.values())]
    from regbench.sweep.search import draws

    # Optuna's seeded random sampler, as a search with search.sampler=random draws; rounded to 4 significant
    # digits, which name the runs' folders
    return [{k: _round(v) for k, v in point.items()} for point in draws(t.space, t.budget, t.sampler_seed)]


def _round(v):
    return float(f"{v:.4g}") if isinstance(v, float) else v


# ------------------------------------------------------------------------------------------------ arms

@dataclass
class Arm:
    lines: tuple[str, ...]  # the job's overrides, seed and tuned keys removed

    def values(self) -> dict[str, str]:
        return dict(line.lstrip("+~").split("=", 1) for line in self.lines)


def arms_and_seeds(jobs, t: Tuning) -> tuple[list[Arm], list[str]]:
    """The study's arms (its jobs without seed and tuned keys, in launch order) and its seeds."""
    arms: dict[tuple, None] = {}
    seeds: dict[str, None] = {}
    for job in jobs:
        lines = []
        for line in job.overrides:
            key, _, value = line.lstrip("+~").partition("=")
            if key == "seed":
                seeds[value] = None
            elif key not in t.keys:
                lines.append(line)
        arms[tuple(lines)] = None
    return [Arm(a) for a in arms], list(seeds) or ["0"]


# ------------------------------------------------------------------------------------------------ selection

def select(tuning_dir: Path, arms: list[Arm], points: list[dict], t: Tuning) -> list[dict]:
    """Per arm: every candidate's mean validation metric over the tuning seeds, and the chosen one."""
    from regbench.sweep.results import load_runs

    runs = load_runs(tuning_dir, expected=False)
    better = METRICS[t.metric]
    worst = -math.inf if better is max else math.inf
    chosen = []
    for arm in arms:
        mine = runs
        for key, value in arm.values().items():
            mine = mine[mine[key].astype(str) == value] if key in mine else mine.iloc[0:0]
        scores = []
        for point in points:
            rows = mine
            for key, value in point.items():
                rows = rows[rows[key].astype(float).sub(float(value)).abs() <= 1e-12 * max(1.0, abs(value))] if key in rows else rows.iloc[0:0]
            rows = rows[rows["seed"].astype(str).isin([str(s) for s in t.seeds])]
            missing = len(t.seeds) - len(rows)
            if missing or not rows["status"].isin(["completed", "diverged", "failed"]).all():
                raise UserError(f"tuning of arm {' '.join(arm.lines) or '(baseline)'} is incomplete: {missing} run(s) "
                                f"of {point} missing; re-run the same command to finish it")
            values = [v if r == "completed" and v == v else worst for v, r in zip(rows[t.metric], rows["status"])]
            scores.append(sum(values) / len(values))
        best = better(range(len(points)), key=lambda i: scores[i])
        chosen.append({"arm": arm.values(), "overrides": list(arm.lines), "chosen": points[best],
                       t.metric: scores[best] if math.isfinite(scores[best]) else None,
                       "candidates": [{**p, t.metric: s if math.isfinite(s) else None} for p, s in zip(points, scores)]})
    return chosen


# ------------------------------------------------------------------------------------------------ the protocol

def protocol(t: Tuning) -> dict:
    """What makes two tuned studies the same study: its space, budget, tuning seeds, metric and draws."""
    return {"space": t.space, "budget": t.budget, "tuning_seeds": t.seeds, "metric": t.metric, "sampler_seed": t.sampler_seed}


def claim_protocol(base: Path, t: Tuning) -> None:
    """Record ``t``'s protocol in the sweep dir, or refuse in one line if the dir holds a study of another
    protocol (a changed tune.space would mix two studies' runs in tuning/ and final/)."""
    import json

    from regbench.files import write_json

    mine = protocol(t)
    path = base / PROTOCOL_FILE
    held = None
    try:
        held = json.loads(path.read_text()) if path.exists() else None
        if held is None and (base / TUNED_FILE).exists():  # a study tuned before the protocol file existed
            old = json.loads((base / TUNED_FILE).read_text())
            held = {k: old.get(k) for k in ("space", "budget", "tuning_seeds", "metric")} | {"sampler_seed": t.sampler_seed}
    except (OSError, ValueError, AttributeError):
        raise UserError(f"{path if path.exists() else base / TUNED_FILE} is damaged; move it away, or choose another "
                        "hydra.sweep.dir") from None
    if held is not None and _canonical(held) != _canonical(mine):
        differs = [k for k in mine if _canonical(held.get(k)) != _canonical(mine[k])]
        raise UserError(f"{base} holds a tuned study of another protocol ({', '.join(f'tune.{k}' for k in differs)}: "
                        f"{'; '.join(f'{held.get(k)!r} there, {mine[k]!r} now' for k in differs)}); choose another "
                        "hydra.sweep.dir, or move that one away")
    if held is None:
        base.mkdir(parents=True, exist_ok=True)
        write_json(path, mine)


def _canonical(value) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


def run(args, plan, launch) -> int:
    """`regbench run -m` of a study with ``tune.space``: tuning, selection, final (see the module's doc).
    ``launch(RunArgs) -> exit code`` is the CLI's sweep (pre-check, stacks, Hydra, end of sweep)."""
    from dataclasses import replace

    from regbench.console import console
    from regbench.files import write_json

    import time

    started = time.time()
    t = tuning_of(plan.config)
    arms, seeds = arms_and_seeds(plan.jobs, t)
    points = candidates(t)
    base = Path(plan.sweep_dir)
    hydra_lines = [o for o in args.overrides if o.lstrip("+~").startswith(("hydra.", "hydra/"))
                   and not o.lstrip("+~").startswith("hydra.sweep.dir")]
    claim_protocol(base, t)
    out = console()
    out.print(f"tuned protocol: {len(arms)} arm(s) × {t.budget} candidate(s) of {', '.join(t.keys)} × "
              f"{len(t.seeds)} tuning seed(s), then each arm's choice over seed(s) {', '.join(seeds)}", markup=False)

    command = [o for o in args.overrides if not o.lstrip("+~").startswith("hydra.sweep.dir")]
    if all(isinstance(s, list) for s in t.space.values()):  # a grid: the product of the keys' values
        sweeps = [[f"{k}={','.join(override_value(v) for v in t.space[k])}" for k in t.keys]]
    elif len(t.keys) == 1:  # one key drawn: one sweep over the draws
        sweeps = [[f"{t.keys[0]}={','.join(override_value(p[t.keys[0]]) for p in points)}"]]
    else:  # joint draws of several keys: one sweep per draw
        sweeps = [[f"{k}={override_value(p[k])}" for k in t.keys] for p in points]
    tuning_seeds = f"seed={','.join(map(str, t.seeds))}"
    for sweep in sweeps:
        code = launch(replace(args, overrides=[*command, tuning_seeds, *sweep, f"hydra.sweep.dir={base / 'tuning'}"]))
        if code == 2:
            return code
    chosen = select(base / "tuning", arms, points, t)
    varied = {k for k in chosen[0]["arm"] if len({str(c["arm"].get(k)) for c in chosen}) > 1}
    for c in chosen:
        c["arm"] = {k: v for k, v in c["arm"].items() if k in varied}
    write_json(base / TUNED_FILE, {"space": t.space, "budget": t.budget, "tuning_seeds": t.seeds, "metric": t.metric,
                                   "final_seeds": [int(s) for s in seeds], "arms": chosen})
    for arm in chosen:
        out.print(f"tuned: {' '.join(f'{k}={v}' for k, v in arm['arm'].items()) or '(one arm)'} → "
                  f"{', '.join(f'{k}={override_value(v)}' for k, v in arm['chosen'].items())} "
                  f"({t.metric} {_score(arm[t.metric])} over the tuning seeds)", markup=False, soft_wrap=True)
    code = 0
    for arm in chosen:
        final = [*arm["overrides"], *hydra_lines, *(f"{k}={override_value(v)}" for k, v in arm["chosen"].items()),
                 f"seed={','.join(seeds)}", f"hydra.sweep.dir={base / 'final'}"]
        code = max(code, launch(replace(args, overrides=final), table=False))
        if code == 2:
            return code
    from regbench.sweep.end import end_of_sweep

    code = max(code, end_of_sweep(base / "final", [], every_run=True, started=started))
    out.print(f"tuned protocol done: the final table is {base / 'final'} (regbench report {base / 'final'}); "
              f"the choices are in {base / TUNED_FILE}", markup=False, soft_wrap=True)
    return code


def _score(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
