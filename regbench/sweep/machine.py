"""Jobs of a sweep that share one machine: their CPU threads, and a GPU each when there are several.

When a launcher runs jobs side by side on this machine (joblib, submitit's local executor), each job
limits torch to its share of the cores; with several GPUs, each takes one of its own (a lock file per
GPU in the sweep dir), sharing round robin when there are more jobs than GPUs.
"""

from __future__ import annotations

import functools
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig

log = logging.getLogger("regbench")


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def parallel_jobs(launcher: DictConfig, n_sweep_jobs: int | None = None) -> int:
    """How many jobs the launcher runs side by side on this machine (1: the job has the machine to itself)."""
    target = str(launcher.get("_target_", ""))
    if "Joblib" in target:
        n = int(launcher.get("n_jobs", -1))
        n = _cpus() + 1 + n if n < 0 else n  # joblib: -1 all cores, -2 all but one, ...
        return max(1, min(n, n_sweep_jobs or n))
    if target.endswith("submitit_launcher.LocalLauncher"):
        return max(1, n_sweep_jobs or 1)  # the local executor starts every job at once
    return 1


def cpu_threads(launcher: DictConfig, n_sweep_jobs: int | None = None) -> int | None:
    """Torch threads for one job: submitit's cpus_per_task when given, else this machine's cores over the
    jobs sharing them; None when the job has the machine to itself (torch's default)."""
    cpus_per_task = launcher.get("cpus_per_task")
    if cpus_per_task:
        return int(cpus_per_task)
    n = parallel_jobs(launcher, n_sweep_jobs)
    return max(1, _cpus() // n) if n > 1 else None


#: Set by `regbench run` in the launching process; the jobs it starts inherit it.
LAUNCHER_PID = "REGBENCH_LAUNCHER_PID"


@functools.cache
def end_with_launcher() -> None:
    """In a worker process of a launcher that runs jobs beside the launching command (joblib's loky workers): end
    this process once that command is gone. A SIGKILL of the command (a closed terminal, the OOM killer) left
    its workers training on as orphans, holding their run dirs' locks against the rerun; a checkpointed job
    resumes there instead. Checked every half second by a daemon thread; nothing in the launching process."""
    import threading
    import time

    pid = int(os.environ.get(LAUNCHER_PID) or 0)
    if not pid or pid == os.getpid():
        return

    def watch():
        while True:
            time.sleep(0.5)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                log.error("the launching command (pid %d) is gone: this worker ends too (the sweep command resumes it)", pid)
                os._exit(1)
            except OSError:
                pass  # alive, owned by another user

    threading.Thread(target=watch, name="regbench-end-with-launcher", daemon=True).start()


@contextmanager
def job_resources(cfg: DictConfig, hc, stack_units: int | None = None):
    """CPU threads and GPU for a job that shares the machine with others of its sweep; ``stack_units``: how many
    jobs of the sweep train (a stack counting one), from its stack plan (None: every job trains)."""
    from hydra.types import RunMode

    if hc.mode != RunMode.MULTIRUN:
        yield
        return
    if "joblib" in str(hc.launcher.get("_target_", "")):
        end_with_launcher()
    n_jobs = stack_units or _sweep_size(Path(hc.sweep.dir))
    threads = cpu_threads(hc.launcher, n_jobs)
    if threads and not cfg.trainer.num_threads:
        import torch

        torch.set_num_threads(threads)
        log.info("job limited to %d CPU thread(s): %d job(s) share %d core(s)", threads,
                 parallel_jobs(hc.launcher, n_jobs), _cpus())
    lock = None
    if parallel_jobs(hc.launcher, n_jobs) > 1 and str(cfg.trainer.device) in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 1:
            index, lock = claim_gpu(Path(hc.sweep.dir) / ".gpu-locks", torch.cuda.device_count(), hc.job.get("num", 0))
            torch.cuda.set_device(index)
            log.info("job runs on cuda:%d", index)
    try:
        yield
    finally:
        if lock is not None:
            lock.close()


def claim_gpu(lock_dir: Path, n_gpus: int, job_num: int = 0):
    """(GPU index, open lock file) for the first GPU no other job of the sweep holds; the lock lasts until
    the file is closed (or the process ends). If all are taken, GPUs are shared round-robin by job number."""
    import fcntl

    lock_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_gpus):
        f = open(lock_dir / f"cuda{i}.lock", "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return i, f
        except OSError:
            f.close()
    return job_num % n_gpus, None


def _sweep_size(sweep_dir: Path) -> int | None:
    from regbench.sweep.jobs import once_per_sweep

    return once_per_sweep(sweep_dir, _expected_count)


def _expected_count(cfg) -> int | None:
    from regbench.sweep.jobs import expected_count

    return expected_count(cfg) if cfg is not None else None
