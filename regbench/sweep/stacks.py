"""Which jobs of a sweep train together (stacked training, :mod:`regbench.stack`), and who trains them.

`regbench run -m` knows every job of a basic-sweeper sweep before Hydra launches it (the pre-check
composes them all). :func:`plan_stacks` groups the jobs still to train by :func:`regbench.stack.stack_key`
and cuts each group into stacks; :func:`write_plan` records them in ``<sweep dir>/.regbench-stacks.json``.
Hydra then launches every job as usual, with whatever launcher the command names:

- the first job of a stack in launch order, its **leader**, trains the whole stack (holding every
  member's run-dir lock), so a stack is the unit a joblib worker or a cluster job runs;
- the other jobs of the stack, its **members**, train nothing: they report the result the leader wrote,
  or ``stacked`` while the leader is still at it (in another process). regbench's SLURM launcher
  (``hydra/launcher=slurm``, `regbench submit`: :func:`regbench.sweep.submit.launch`) does not submit them at all,
  so that SLURM schedules no task for them.

Each member's run dir ends exactly as its solo run's would (plus ``"stacked": K`` in ``result.json``),
so a killed stacked sweep resumes with the same command, stacked or with ``stack=1``.

The top-level key ``stack`` sizes the stacks: ``auto`` (stack what can stack, as many as fit; under a
launcher that runs P jobs side by side, at least P stacks so every worker has one), a number (at most
that many members per stack), ``1`` (every job alone). It is not part of a run's id or folder name.
Jobs that cannot stack (another network shape, a regularizer with no stacked form) train alone; the
launching process says why, once per reason.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("regbench")

PLAN_FILE = ".regbench-stacks.json"


@dataclass
class StackPlan:
    stacks: list[list[int]] = field(default_factory=list)  # indices into the entries, launch order, leader first
    alone: dict[str, list[int]] = field(default_factory=dict)  # reason → indices of jobs that train alone
    units: int = 0  # jobs a launcher actually runs: stacks + jobs alone (finished ones excluded)
    # index → the resolved configuration (regbench.config.to_container) of each job that may stack, made once
    # for its key and kept for the plan file: about 4 KB a job, where composing it again cost 3 ms
    resolved: dict[int, dict] = field(default_factory=dict)


def plan_stacks(cfgs: list, parallel: int = 1) -> StackPlan:
    """Stacks for the composed configurations ``cfgs`` of the jobs still to train (None for a finished job).

    ``parallel``: jobs the launcher runs side by side; ``stack=auto`` cuts stacks so that at least that many
    units exist (each joblib worker trains a stack of its own)."""
    from regbench.config import to_container
    from regbench.stack import MAX_STACK_CPU, key_text, stack_key, why_not_stackable

    plan = StackPlan()
    groups: dict[tuple, list[int]] = {}
    by_text: dict[str, tuple] = {}  # as stack_keys: a key (which builds a meta model) once per key text
    for i in range(len(cfgs)):
        cfg = cfgs[i]  # each once: a sweep's configs are composed again when asked for (regbench.validate.JobConfigs)
        if cfg is None:
            continue
        if cfg.get("stack", 1) == 1:
            plan.alone.setdefault("stack=1", []).append(i)
            continue
        data = to_container(cfg)
        text = key_text(cfg, data)
        if text not in by_text:
            key = stack_key(cfg)
            by_text[text] = (key, why_not_stackable(cfg) if key is None else None)
        key, why = by_text[text]
        if key is None:
            plan.alone.setdefault(why, []).append(i)
        else:
            groups.setdefault((key, cfg.stack), []).append(i)
            plan.resolved[i] = data
    cuts = {g: math.ceil(len(members) / (MAX_STACK_CPU if g[1] == "auto" else int(g[1]))) for g, members in groups.items()}
    solo = sum(len(v) for v in plan.alone.values())
    while solo + sum(cuts.values()) < parallel:  # auto: one stack per worker at least
        splittable = [g for g in groups if g[1] == "auto" and len(groups[g]) > cuts[g]]
        if not splittable:
            break
        widest = max(splittable, key=lambda g: len(groups[g]) / cuts[g])
        cuts[widest] += 1
    for g, members in groups.items():
        for chunk in _even_chunks(members, cuts[g]):
            if len(chunk) == 1:
                plan.alone.setdefault("a stack of one", []).append(chunk[0])
                del plan.resolved[chunk[0]]
            else:
                plan.stacks.append(chunk)
    plan.units = len(plan.stacks) + sum(len(v) for v in plan.alone.values())
    return plan


def _even_chunks(items: list, n: int) -> list[list]:
    """``items`` in ``n`` contiguous chunks whose sizes differ by at most one."""
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for k in range(n):
        end = start + size + (1 if k < extra else 0)
        out.append(items[start:end])
        start = end
    return [c for c in out if c]


# ------------------------------------------------------------------------------------------- the plan file

def write_plan(sweep_dir: Path, plan: StackPlan, dirnames: list[str], overrides: list[list[str]]) -> None:
    """Record ``plan`` for the jobs (by folder name); with no stack, remove an earlier plan (this command
    trains every job alone). Each stack lists its members' resolved configurations and overrides."""
    from regbench.config import id_of
    from regbench.files import write_json

    path = Path(sweep_dir) / PLAN_FILE
    _check_plan_path(path)
    if not plan.stacks:
        path.unlink(missing_ok=True)
        return
    stacks = []
    for members in plan.stacks:
        stacks.append([{"dirname": dirnames[i], "run_id": id_of(data), "config": data, "overrides": list(overrides[i])}
                       for i in members for data in (plan.resolved[i],)])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"units": plan.units, "stacks": stacks})


def _check_plan_path(path: Path) -> None:
    from regbench.errors import UserError

    if path.exists() and not path.is_file():
        raise UserError(f"{path} is not regbench's stack plan (a file) but a {'directory' if path.is_dir() else 'special file'}: "
                        "move it away and re-run")


@dataclass
class Role:
    leader: bool
    members: list[dict]  # the stack, leader first: dirname, run_id, config, overrides


_PLANS: dict[tuple, dict | None] = {}


def read_plan(sweep_dir: Path) -> dict | None:
    """The sweep's plan file, read once per version of it (a process may run several sweeps into one dir:
    the tuned protocol's final sweeps, or a joblib worker reused by the next command)."""
    path = Path(sweep_dir) / PLAN_FILE
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _PLANS:
        try:
            plan = json.loads(path.read_text())
            _check_plan(plan)
            _PLANS[key] = plan
        except (OSError, ValueError) as e:
            log.warning("%s cannot be used (%s): every job trains alone", path, e)
            _PLANS[key] = None
    return _PLANS[key]


def _check_plan(plan) -> None:
    """A plan as :func:`write_plan` writes it, whose every member folder lies inside the sweep dir (a plan edited
    to name ``../x`` or ``/x`` would make a leader write outside it); ValueError naming what is wrong."""
    if not isinstance(plan, dict) or not isinstance(plan.get("stacks"), list) or not isinstance(plan.get("units"), int):
        raise ValueError("not a stack plan")
    for members in plan["stacks"]:
        if not isinstance(members, list) or not members:
            raise ValueError("a stack is not a list of members")
        for m in members:
            if not isinstance(m, dict) or not all(isinstance(m.get(k), t) for k, t in
                                                  (("dirname", str), ("run_id", str), ("config", dict), ("overrides", list))):
                raise ValueError("a member lacks its dirname, run_id, config or overrides")
            name = Path(m["dirname"])
            if name.is_absolute() or ".." in name.parts or not name.parts or m["dirname"] != os.path.normpath(m["dirname"]):
                raise ValueError(f"member folder {m['dirname']!r} is not inside the sweep dir")


def role(sweep_dir: Path, run_dir: Path, rid: str) -> Role | None:
    """This job's part in a stack of the sweep's plan, or None: it trains alone. A plan entry whose run id
    is not this job's (a plan left by another command) is ignored."""
    plan = read_plan(sweep_dir)
    if not plan:
        return None
    name = os.path.relpath(Path(run_dir).resolve(), Path(sweep_dir).resolve())
    for members in plan["stacks"]:
        for k, m in enumerate(members):
            if m["dirname"] == name and m["run_id"] == rid:
                return Role(leader=k == 0, members=members)
    return None


def units(sweep_dir: Path) -> int | None:
    """How many jobs of the sweep train (stacks count one), from its plan; None without a plan."""
    plan = read_plan(sweep_dir)
    return plan["units"] if plan else None


def describe(plan: StackPlan, n_jobs: int) -> list[str]:
    """Lines for the launching process's log: the stacks and why the other jobs train alone."""
    lines = []
    if plan.stacks:
        sizes = sorted((len(s) for s in plan.stacks), reverse=True)
        lines.append(f"stack: {sum(sizes)} of {n_jobs} runs train in {len(sizes)} stack(s) of "
                     f"{', '.join(map(str, sizes))}")
    for reason, members in plan.alone.items():
        if reason not in ("stack=1", "a stack of one"):
            lines.append(f"stack: {len(members)} run(s) train alone: {reason}")
    return lines


def prepare(plan) -> None:
    """In the launching process, after the pre-check (:class:`regbench.validate.Plan`): plan the stacks of a
    basic-sweeper sweep, write the plan file and log the stacks. Nothing trains here."""
    from regbench.sweep.jobs import is_basic_sweeper
    from regbench.sweep.machine import parallel_jobs

    # plan.config: the first job's config with Hydra's node (the sweeper and launcher are every job's)
    if plan.sweep_dir is None or not plan.todo or not is_basic_sweeper(plan.config):
        if plan.sweep_dir is not None:
            (Path(plan.sweep_dir) / PLAN_FILE).unlink(missing_ok=True)
        return
    import gc

    gc.freeze()  # as the pre-check: each job's config is cyclic garbage; its collections leave older objects out
    try:
        stacks = plan_stacks(plan.configs, parallel_jobs(plan.config.hydra.launcher, plan.todo))
        jobs = plan.jobs[:len(plan.configs)]
        write_plan(plan.sweep_dir, stacks, [j.dirname for j in jobs], [j.overrides for j in jobs])
    finally:
        gc.unfreeze()
    from regbench.console import console

    for line in describe(stacks, plan.todo):
        console().print(line, markup=False, soft_wrap=True)
