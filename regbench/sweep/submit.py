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

import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from regbench.sweep.slurm import ACTIVE, MANIFEST, read_manifest, still_active  # noqa: F401 (re-exported)

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
    if shutil.which("sbatch") is None:
        raise UserError("sbatch is not on PATH: regbench submit needs a SLURM cluster (`regbench run -m ...` runs a sweep here)")
    args = parse_run_args(["-m", *overrides])
    if args.info:
        raise UserError("regbench submit takes overrides only (see regbench run --help for the config groups)")
    started = time.monotonic()
    _refuse_while_active(args)
    with submit_only(" ".join(["regbench", "submit", *argv])) as submitted:
        code = launch(args, table=False)
    if code or not submitted:
        return code
    if isinstance(submitted[0], Exception):
        raise submitted[0] if isinstance(submitted[0], UserError) else UserError(str(submitted[0]))
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
    from regbench.errors import UserError
    from regbench.sweep.jobs import command_jobs
    from omegaconf import OmegaConf

    try:
        hydra_cfg, _ = command_jobs(args.overrides, args.config_name)
        sweep_dir = Path(str(OmegaConf.select(hydra_cfg, "hydra.sweep.dir")))
        active = still_active(sweep_dir)
    except UserError:
        raise
    except Exception:
        return  # a bad command: the pre-check says what is wrong with it
    if active:
        raise UserError(f"{sweep_dir} was submitted already and job(s) {', '.join(active[:5])} are still queued or running: "
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
