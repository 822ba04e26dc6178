"""`regbench submit OVERRIDES`: a sweep submitted to SLURM as one job array, and the command returns.

The sweep is planned as `regbench run -m` plans it (every job checked first, stacks planned, ``multirun.yaml``
written), launched by ``hydra/launcher=slurm`` (the default here; ``submitit_slurm``'s resources too) and submitted
as one job array by regbench's launcher (``hydra_plugins/regbench_launcher``, whose launch is :func:`launch`;
``hydra.launcher.array_parallelism`` caps how many tasks run at once). Then, instead of waiting for the last task
as `run -m` does, the command writes ``<sweep dir>/.regbench-submitted.json`` (the
array's job id, each task's id, run dir and overrides, the command) and returns. The tasks need nothing from the submitting
process: follow them with ``regbench status <sweep dir>`` (each run's own state) and ``squeue``/``sacct``, and
collect them with ``regbench results`` / ``report`` at any time.

The array holds one task per unit of work: a stack (its leader trains every member) or a run alone; finished runs
and the members a leader trains are not submitted. Submitting the same sweep again sends only what is neither
finished nor queued or running in an earlier submission (by the manifest's run dirs and ``squeue``), so no run is
ever submitted twice; the manifest keeps the earlier submissions that still have tasks (``tests/slurm/test_submit.py``).
"""

from __future__ import annotations

import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from regbench.sweep.slurm import MANIFEST, active_tasks, read_manifest, submissions_of, task_dirs

LAUNCHERS = ("slurm", "submitit_slurm")
def main(argv: list[str], parse_run_args, launch) -> int:
    """`regbench submit ARGV`, with the CLI's ``parse_run_args`` and ``launch`` (regbench.cli hands them in, so this
    module does not import the CLI); bad input is a UserError, which the CLI prints in one line with exit 2."""
    from regbench.errors import UserError

    overrides = [a for a in argv if a not in ("-m", "--multirun")]
    launcher = [o.split("=", 1)[1] for o in overrides if o.startswith("hydra/launcher=")]
    if not launcher:
        overrides.append("hydra/launcher=slurm")
    elif launcher[-1] not in LAUNCHERS:
        raise UserError(f"regbench submit runs on SLURM: hydra/launcher={launcher[-1]} is not one of {', '.join(LAUNCHERS)}")
    overrides.append(f"hydra.launcher._target_={LAUNCHER}")  # the plugin's submitit_slurm too: its resources, our launch
    if shutil.which("sbatch") is None:
        raise UserError("sbatch is not on PATH: regbench submit needs a SLURM cluster (`regbench run -m ...` runs a sweep here)")
    args = parse_run_args(["-m", *overrides])
    if args.info:
        raise UserError("regbench submit takes overrides only (see regbench run --help for the config groups)")
    started = time.monotonic()
    submission = Submission(" ".join(["regbench", "submit", *argv]))
    try:
        with submitting(submission):
            code = launch(args, table=False, busy=submission.busy_in, planned=submission.planned)
    except NothingToSubmit as e:
        print(f"nothing to submit: {e}")
        return 0
    if code:
        return code
    if submission.manifest is None:
        print(f"nothing to submit: {submission.counts()}")
        return 0
    sweep_dir, manifest = submission.sweep_dir, submission.manifest
    array = manifest["array_job_id"]
    runs = sum(len(t["run_dirs"]) for t in manifest["tasks"])
    print(f"submitted {len(manifest['tasks'])} job(s) for {runs} run(s) as SLURM array {array} in "
          f"{time.monotonic() - started:.1f} s: {sweep_dir}" + (f" ({submission.counts()})" if submission.skipped else "") +
          f"\n  follow:  regbench status {sweep_dir}   (SLURM's view: squeue -j {array}, sacct -j {array})"
          f"\n  results: regbench results {sweep_dir}   (any time; partial until every job has ended)")
    return 0


class NothingToSubmit(Exception):
    """Every run of the sweep is finished, or queued or running in an earlier submission."""


class Submission:
    """One `regbench submit`: what its plan leaves out, and what it sent.

    The pre-check asks :meth:`busy_in` which run dirs of the sweep to leave out (no stack takes them): ``earlier``
    are the sweep's earlier submissions that still have tasks SLURM has not ended, ``active`` those tasks, ``busy``
    their run dirs. :meth:`planned` sees the checked plan, and ``todo`` is then the run dirs this submission
    trains. The launcher (:func:`launch`, while :func:`submitting` holds it) fills ``manifest`` (None: nothing was left to
    submit); an array SLURM refused is raised by the CLI once Hydra is done (:func:`take_refusal`)."""

    def __init__(self, command: str):
        self.command = command
        self.sweep_dir: Path | None = None
        self.earlier: list[dict] = []
        self.active: set[str] = set()
        self.busy: set[str] = set()
        self.todo: set[str] | None = None
        self.finished = self.skipped = 0
        self.manifest: dict | None = None

    def busy_in(self, sweep_dir: Path) -> set[str]:
        """The run dirs of ``sweep_dir`` that an earlier submission's tasks still hold, from its manifest and
        ``squeue``; read before anything is planned or written (a damaged manifest is one line, nothing is sent)."""
        self.sweep_dir = sweep_dir
        manifest = read_manifest(sweep_dir)
        if manifest is not None:
            self.active = set(active_tasks(manifest))
            self.earlier = [m for m in submissions_of(manifest) if any(t.get("job_id") in self.active for t in m["tasks"])]
        self.busy = {d for m in self.earlier for t in m["tasks"] if t.get("job_id") in self.active for d in task_dirs(t)}
        return self.busy

    def planned(self, plan) -> None:
        """The checked plan (the busy runs left out by the check): what this submission trains."""
        finished = getattr(plan.configs, "finished", None)
        if finished is None:  # not a basic sweep (nothing is planned by run dir): submit what Hydra launches
            return
        self.skipped, self.finished = plan.busy, sum(finished) - plan.busy
        self.todo = {job.dirname for i, job in enumerate(plan.jobs[:len(finished)]) if not finished[i]}
        if not self.todo:
            raise NothingToSubmit(self.counts())

    def counts(self) -> str:
        parts = [f"{self.finished} run(s) finished"] if self.finished else []
        if self.busy:
            arrays = sorted({m["array_job_id"] for m in self.earlier for t in m["tasks"] if t.get("job_id") in self.active})
            parts.append(f"{self.skipped} run(s) queued or running in array {', '.join(map(str, arrays))}")
        return ", ".join(parts) or "no run to train"


#: The `regbench submit` in progress in this process (:func:`submitting`), which :func:`launch` fills; None while
#: `run -m` launches.
_SUBMISSION: Submission | None = None

#: What sbatch said when it refused a sweep's array in this process, under `run -m` or `submit` (:func:`take_refusal`).
_REFUSED: list = []

#: The preset's launcher (``conf/hydra/launcher/slurm.yaml``), which `submit` also sets for the plugin's
#: ``hydra/launcher=submitit_slurm``: its launch is :func:`launch`.
LAUNCHER = "hydra_plugins.regbench_launcher.regbench_launcher.RegbenchSlurmLauncher"


@contextmanager
def submitting(submission: Submission):
    """While it is open, the launcher's :func:`launch` submits the sweep's array, writes the manifest and returns
    (its jobs reported to Hydra as launched), filling ``submission``."""
    global _SUBMISSION
    _SUBMISSION = submission
    try:
        yield submission
    finally:
        _SUBMISSION = None


def launch(launcher, job_overrides, initial_job_idx: int) -> list:
    """``RegbenchSlurmLauncher.launch`` (``hydra_plugins/regbench_launcher``): one array task per stack (its leader
    trains every member) and per run alone (:func:`to_submit`), where the plugin's own launch submits every job.

    Under `regbench submit` (:func:`submitting`) it writes the manifest and returns at once, each job reported as
    launched. Under `run -m` it waits for the tasks, as the plugin does, and returns each job's outcome: a task's
    own, and for a member its result.json, which its leader wrote. Either way, an array SLURM refuses (a partition
    that does not exist) is one line after Hydra is done, exit 2, nothing submitted."""
    from hydra.core.utils import JobReturn, JobStatus

    from regbench.errors import UserError

    if _SUBMISSION is not None:
        try:
            _submit(launcher, job_overrides, initial_job_idx, _SUBMISSION)
        except Exception as e:  # raised in one line once Hydra is done (regbench.cli): nothing was submitted
            _REFUSED.append(e if isinstance(e, UserError) else UserError(str(e)))
            return []
        return [JobReturn(overrides=list(o), status=JobStatus.COMPLETED, _return_value={"status": "submitted"})
                for o in job_overrides]
    try:
        sweep_dir, names, chosen, jobs = _submit_array(launcher, job_overrides, initial_job_idx, None)
    except UserError as e:  # raised in one line once Hydra is done (regbench.cli): nothing was submitted
        _REFUSED.append(e)
        return []
    returns = {i: job.results()[0] for job, (i, _) in zip(jobs, chosen)}
    leaders = {d: dirs[0] for _, dirs in chosen for d in dirs[1:]}
    return [returns[i] if i in returns else _member_return(list(o), sweep_dir, names[tuple(o)], leaders)
            for i, o in enumerate(job_overrides)]


def take_refusal():
    """The UserError of a sweep whose array SLURM refused (:func:`launch`), once, or None: `regbench.cli` raises it
    after Hydra's launch, for `run -m` and `submit` alike."""
    return _REFUSED.pop() if _REFUSED else None


def _member_return(overrides: list[str], sweep_dir: Path, name: str, leaders: dict[str, str]):
    """The outcome of the stack member in run dir ``name``, which was not submitted: its result.json (its leader's
    task wrote it), or ``stacked`` if there is none (the leader's task failed before this member ended: the
    leader's own job return says so)."""
    from hydra.core.utils import JobReturn, JobStatus

    from regbench.errors import DamagedFile
    from regbench.records import Result, Status
    from regbench.train import read_result

    try:
        result = read_result(sweep_dir / name)
    except DamagedFile:
        result = None
    return JobReturn(overrides=overrides, status=JobStatus.COMPLETED,
                     _return_value=result or Result(Status.STACKED, extra={"leader": leaders.get(name)}))


def to_submit(job_overrides, dirnames: dict, plan: dict | None, todo: set[str] | None) -> list[tuple[int, list[str]]]:
    """The jobs to submit, as (index into ``job_overrides``, the run dirs its task trains): a stack's leader (with
    every member) and each run that trains alone, in launch order; not a finished run, one another submission has
    queued or running, nor a member its leader trains. A job whose run dir is unknown is submitted as it is."""
    stacks = {s[0]["dirname"]: [m["dirname"] for m in s] for s in (plan or {}).get("stacks", [])}
    members = {d for dirs in stacks.values() for d in dirs[1:]}
    out = []
    for i, o in enumerate(job_overrides):
        name = dirnames.get(tuple(o))
        if name is None:
            out.append((i, []))
        elif (todo is None or name in todo) and name not in members:
            out.append((i, stacks.get(name, [name])))
    return out


def _submit(launcher, job_overrides, initial_job_idx: int, submission: Submission) -> None:
    """:func:`_submit_array` of the jobs ``submission`` trains, then the manifest."""
    from hydra.core.utils import filter_overrides

    from regbench.files import write_json

    sweep_dir, _, chosen, jobs = _submit_array(launcher, job_overrides, initial_job_idx, submission.todo)
    submission.sweep_dir = sweep_dir
    if not chosen:
        return
    tasks = [{"job_id": j.job_id, "run_dir": dirs[0] if dirs else None, "run_dirs": dirs,
              "overrides": filter_overrides(list(job_overrides[i]))} for j, (i, dirs) in zip(jobs, chosen)]
    submission.manifest = {"array_job_id": jobs[0].job_id.split("_")[0], "sweep_dir": str(sweep_dir.resolve()),
                           "command": submission.command,
                           "submitted_at": time.time(), "tasks": tasks,
                           "earlier": [{k: v for k, v in m.items() if k != "earlier"} for m in submission.earlier]}
    write_json(sweep_dir / MANIFEST, submission.manifest)


def _submit_array(launcher, job_overrides, initial_job_idx: int, todo: set[str] | None):
    """What BaseSubmititLauncher.launch does (hydra-submitit-launcher 1.2), up to and with ``map_array``, without the
    wait, for :func:`to_submit` of the jobs only (of ``todo``'s run dirs, if given): (the sweep dir, each job's run
    dir by its overrides as ``multirun.yaml`` names it, the chosen jobs, their submitit jobs). What sbatch says when
    it refuses is one line (a UserError)."""
    import submitit
    from hydra.core.singleton import Singleton
    from omegaconf import OmegaConf

    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    from regbench.errors import UserError
    from regbench.sweep.jobs import sweep_jobs
    from regbench.sweep.stacks import read_plan

    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    dirnames = {tuple(j.overrides): j.dirname for j in sweep_jobs(sweep_dir) or []}  # from multirun.yaml, as Hydra wrote it
    chosen = to_submit(job_overrides, dirnames, read_plan(sweep_dir), todo)
    if not chosen:
        return sweep_dir, dirnames, chosen, []
    params = dict(launcher.params)
    init = {"folder": params.pop("submitit_folder")}
    if "max_num_timeout" in params:
        init[f"{launcher._EXECUTOR}_max_num_timeout"] = params.pop("max_num_timeout")
    executor = submitit.AutoExecutor(cluster=launcher._EXECUTOR, **init)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"{launcher._EXECUTOR}_{k}": v for k, v in params.items()})
    sweep_dir.mkdir(parents=True, exist_ok=True)
    state = Singleton.get_state()  # the same for every job (the plugin takes it per job: 15 ms each here)
    job_params = [(list(job_overrides[i]), "hydra.sweep.dir", initial_job_idx + i, f"job_id_for_{initial_job_idx + i}", state)
                  for i, _ in chosen]
    jobs, refused = _quietly(lambda: executor.map_array(launcher, *zip(*job_params)))
    if refused is not None:  # sbatch refused it: a partition that does not exist, an account, ...
        lines = [line.strip() for line in refused.splitlines() if "sbatch: error" in line] or \
            [line.strip() for line in refused.splitlines() if line.strip()]
        raise UserError(f"SLURM refused the submission: {lines[-1] if lines else 'sbatch failed'}")
    return sweep_dir, dirnames, chosen, jobs


def _quietly(submit):
    """``submit()`` with file descriptor 2 kept in a temporary file (submitit lets sbatch write its complaints there):
    (its value, None), or (None, what was written and the error) when it raised. What a success wrote is passed on."""
    import os
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as kept:
        os.dup2(kept.fileno(), 2)
        try:
            value, error = submit(), None
        except Exception as e:
            value, error = None, e
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        kept.seek(0)
        said = kept.read().decode(errors="replace")
    if error is None:
        sys.stderr.write(said)
        return value, None
    return None, f"{said}\n{error}"
