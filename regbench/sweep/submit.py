"""`regbench submit OVERRIDES`: a sweep submitted to SLURM as one job array, and the command returns.

The sweep is planned as `regbench run -m` plans it (every job checked first, stacks planned, ``multirun.yaml``
written), launched by ``hydra/launcher=slurm`` (the default here; ``submitit_slurm`` too), and submitted as one job
array, a task per job of the sweep (``hydra.launcher.array_parallelism`` caps how many run at once). Then, instead of
waiting for the last task as Hydra's launcher does, the command writes ``<sweep dir>/.regbench-submitted.json`` (the
array's job id, each task's id, run dir and overrides, the command) and returns. The tasks need nothing from the submitting
process: follow them with ``regbench status <sweep dir>`` (each run's own state) and ``squeue``/``sacct``, and
collect them with ``regbench results`` / ``report`` at any time.

Submitting the same sweep again while a task of its last submission is queued or running is refused in one line
(exit 2); once they have ended, the same command submits the sweep again, and its jobs skip the runs that finished
and resume the interrupted ones from their checkpoints (``tests/slurm/test_submit.py``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

MANIFEST = ".regbench-submitted.json"
LAUNCHERS = ("slurm", "submitit_slurm")
#: squeue states of a task that has not ended.
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "SUSPENDED", "RESIZING", "REQUEUE_HOLD",
          "REQUEUE_FED", "PREEMPTED", "STOPPED", "SIGNALING", "STAGE_OUT"}


def main(argv: list[str]) -> int:
    from regbench import cli

    overrides = [a for a in argv if a not in ("-m", "--multirun")]
    launcher = [o.split("=", 1)[1] for o in overrides if o.startswith("hydra/launcher=")]
    if not launcher:
        overrides.append("hydra/launcher=slurm")
    elif launcher[-1] not in LAUNCHERS:
        cli._error(f"regbench submit runs on SLURM: hydra/launcher={launcher[-1]} is not one of {', '.join(LAUNCHERS)}")
    if shutil.which("sbatch") is None:
        cli._error("sbatch is not on PATH: regbench submit needs a SLURM cluster (`regbench run -m ...` runs a sweep here)")
    args = cli.parse_run_args(["-m", *overrides])
    if args.info:
        cli._error("regbench submit takes overrides only (see regbench run --help for the config groups)")
    started = time.monotonic()
    _refuse_while_active(args)
    with submit_only(" ".join(["regbench", "submit", *argv])) as submitted:
        code = cli.launch(args, table=False)
    if code or not submitted:
        return code
    if isinstance(submitted[0], Exception):
        cli._error(str(submitted[0]))
    sweep_dir, manifest = submitted[0]
    array = manifest["array_job_id"]
    print(f"submitted {len(manifest['tasks'])} job(s) as SLURM array {array} in {time.monotonic() - started:.1f} s: {sweep_dir}\n"
          f"  follow:  regbench status {sweep_dir}   (SLURM's view: squeue -j {array}, sacct -j {array})\n"
          f"  results: regbench results {sweep_dir}   (any time; partial until every job has ended)")
    return 0


@contextmanager
def submit_only(command: str):
    """While it is open, hydra-submitit-launcher's launch submits the sweep's array, writes the manifest and returns
    (its jobs reported to Hydra as launched); ``submitted`` then holds (sweep dir, manifest), or the UserError that
    stopped the submission."""
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

    submitted: list = []
    original = BaseSubmititLauncher.launch

    def launch(self, job_overrides, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        from regbench.errors import UserError

        try:
            submitted.append(_submit(self, job_overrides, initial_job_idx, command))
        except UserError as e:  # one line, after Hydra is done (nothing was submitted)
            submitted.append(e)
            return []

        return [JobReturn(overrides=list(o), status=JobStatus.COMPLETED, _return_value={"status": "submitted"})
                for o in job_overrides]

    BaseSubmititLauncher.launch = launch
    try:
        yield submitted
    finally:
        BaseSubmititLauncher.launch = original


def _submit(launcher, job_overrides, initial_job_idx: int, command: str) -> tuple[Path, dict]:
    """What BaseSubmititLauncher.launch does (hydra-submitit-launcher 1.2), up to and with ``map_array``, without the wait."""
    import submitit
    from hydra.core.singleton import Singleton
    from hydra.core.utils import filter_overrides
    from omegaconf import OmegaConf

    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    from regbench.errors import UserError

    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    params = dict(launcher.params)
    init = {"folder": params.pop("submitit_folder")}
    if "max_num_timeout" in params:
        init[f"{launcher._EXECUTOR}_max_num_timeout"] = params.pop("max_num_timeout")
    executor = submitit.AutoExecutor(cluster=launcher._EXECUTOR, **init)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"{launcher._EXECUTOR}_{k}": v for k, v in params.items()})
    sweep_dir.mkdir(parents=True, exist_ok=True)
    state = Singleton.get_state()  # the same for every job (the plugin takes it per job: 15 ms each here)
    job_params = [(list(o), "hydra.sweep.dir", initial_job_idx + i, f"job_id_for_{initial_job_idx + i}", state)
                  for i, o in enumerate(job_overrides)]
    jobs, refused = _quietly(lambda: executor.map_array(launcher, *zip(*job_params)))
    if refused is not None:  # sbatch refused it: a partition that does not exist, an account, ...
        lines = [line.strip() for line in refused.splitlines() if "sbatch: error" in line] or \
            [line.strip() for line in refused.splitlines() if line.strip()]
        raise UserError(f"SLURM refused the submission: {lines[-1] if lines else 'sbatch failed'}")
    from regbench.sweep.jobs import sweep_jobs

    dirnames = {tuple(j.overrides): j.dirname for j in sweep_jobs(sweep_dir) or []}  # from multirun.yaml, as Hydra wrote it
    manifest = {"array_job_id": jobs[0].job_id.split("_")[0], "command": command, "submitted_at": time.time(),
                "tasks": [{"job_id": j.job_id, "run_dir": dirnames.get(tuple(o)), "overrides": filter_overrides(list(o))}
                          for j, o in zip(jobs, job_overrides)]}
    from regbench.files import write_json

    write_json(sweep_dir / MANIFEST, manifest)
    return sweep_dir, manifest


def _refuse_while_active(args) -> None:
    """One line and exit 2, before anything is planned or written, while a task of the sweep's last submission is
    queued or running: submitting again would plan its stacks anew under the feet of its jobs, and train runs twice."""
    from regbench import cli
    from regbench.errors import UserError
    from regbench.sweep.jobs import command_jobs
    from omegaconf import OmegaConf

    try:
        hydra_cfg, _ = command_jobs(args.overrides, args.config_name)
        sweep_dir = Path(str(OmegaConf.select(hydra_cfg, "hydra.sweep.dir")))
        active = still_active(sweep_dir)
    except UserError as e:
        cli._error(str(e))
    except Exception:
        return  # a bad command: the pre-check says what is wrong with it
    if active:
        cli._error(f"{sweep_dir} was submitted already and job(s) {', '.join(active[:5])} are still queued or running: "
                   f"`regbench status {sweep_dir}` follows them; submit again once they have ended (or scancel them)")


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


#: sacct's states, as `regbench status` names them.
SLURM_STATES = {"PENDING": "pending", "RUNNING": "running", "REQUEUED": "requeued", "COMPLETING": "running",
                "COMPLETED": "completed", "FAILED": "failed", "CANCELLED": "cancelled", "TIMEOUT": "timed out",
                "PREEMPTED": "requeued", "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed", "BOOT_FAIL": "failed",
                "DEADLINE": "timed out", "SUSPENDED": "pending", "REQUEUE_HOLD": "pending"}


def slurm_view(sweep_dir: Path) -> list[str]:
    """Lines for `regbench status`: the SLURM states of the tasks of the sweep's last submission (sacct), with the
    overrides of each task that failed, was cancelled or timed out; [] when the sweep was not submitted."""
    manifest = read_manifest(sweep_dir)
    if manifest is None:
        return []
    array = str(manifest.get("array_job_id", ""))
    if shutil.which("sacct") is None:
        return [f"SLURM array {array}: sacct is not on PATH here (run `regbench status` where SLURM's tools are)"]
    try:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-D", "-j", array, "-o", "JobID,State"], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return [f"SLURM array {array}: sacct did not answer ({e})"]
    if out.returncode:
        return [f"SLURM array {array}: sacct failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}"]
    attempts: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        job_id, _, state = line.partition("|")
        for task in _array_tasks(job_id):  # pending tasks come as one line: 59_[1-3%1]
            attempts.setdefault(task, []).append(SLURM_STATES.get(state.split()[0] if state else "", state.lower() or "?"))
    states = {}
    for task in manifest["tasks"]:
        seen = attempts.get(str(task.get("job_id")), [])
        states[task["job_id"]] = seen[-1] if seen else "pending"  # not in the accounting yet
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    requeued = sum("requeued" in seen[:-1] for seen in attempts.values())
    order = ["pending", "running", "requeued", "completed", "failed", "cancelled", "timed out"]
    summary = ", ".join(f"{counts[s]} {s}" for s in sorted(counts, key=lambda s: order.index(s) if s in order else 99))
    lines = [f"SLURM array {array} ({len(states)} task(s)): {summary}" + (f"; {requeued} requeued before" if requeued else "")]
    by_id = {t["job_id"]: t for t in manifest["tasks"]}
    for job_id, state in states.items():
        if state in ("failed", "cancelled", "timed out"):
            task = by_id[job_id]
            run = _run_status(Path(sweep_dir), task.get("run_dir"))
            if run in ("completed", "diverged"):
                note = f"   (its run {run} before that)"
            else:
                note = "   (submit the same command again to run it)" if state != "failed" else ""
            lines.append(f"  {state} {job_id}: {task.get('run_dir') or ' '.join(task.get('overrides', []))}{note}")
    return lines


def _run_status(sweep_dir: Path, dirname: str | None) -> str | None:
    """The status a run's result.json records (None: no run dir known, no result yet, or not readable)."""
    if not dirname:
        return None
    try:
        return json.loads((sweep_dir / dirname / "result.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def _array_tasks(job_id: str) -> list[str]:
    """``59_3`` → [59_3]; ``59_[1-3,7%2]`` → [59_1, 59_2, 59_3, 59_7]; anything else as it is."""
    array, _, tasks = job_id.partition("_")
    if not (tasks.startswith("[") and tasks.endswith("]")):
        return [job_id]
    out = []
    for part in tasks[1:-1].split("%")[0].split(","):
        first, _, last = part.partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            out += [f"{array}_{i}" for i in range(int(first), int(last or first) + 1)]
    return out


def read_manifest(sweep_dir: Path) -> dict | None:
    path = Path(sweep_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        from regbench.errors import UserError

        raise UserError(f"{path} is damaged (not JSON): remove it to submit the sweep again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tasks"), list):
        from regbench.errors import UserError

        raise UserError(f"{path} is not a regbench submission manifest: remove it to submit the sweep again")
    return manifest


def still_active(sweep_dir: Path) -> list[str]:
    """The tasks of the sweep's last submission that SLURM has not ended (squeue), [] when none or no submission."""
    manifest = read_manifest(sweep_dir)
    if manifest is None:
        return []
    array = str(manifest.get("array_job_id", ""))
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-j", array, "-o", "%i %T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"regbench: warning: squeue did not answer ({e}); assuming no job of {array} is left", file=sys.stderr)
        return []
    return [line.split()[0] for line in out.stdout.splitlines() if len(line.split()) == 2 and line.split()[1] in ACTIVE]
