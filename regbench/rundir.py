"""A run directory belongs to one configuration and has one writer at a time.

- **Identity.** The first thing a run writes is ``.regbench-run`` holding its run id (the hash of what is
  trained, :func:`regbench.config.run_id`). A directory holding another id — in that file, in its
  ``result.json`` or in its checkpoint — is refused, and so is a non-empty folder regbench did not
  make. The check runs before Hydra writes anything (``regbench run`` checks every job of a sweep
  first) and again when the job starts.
- **One writer.** A training job holds an exclusive lock on ``.lock`` (``flock``: released by the
  operating system when the process ends, so a killed run never blocks a re-run) and names itself in
  ``.running`` (host, pid, start), which ``regbench status`` reads.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from regbench.errors import UserError
from regbench.records import FINISHED, RESULT_FILE, Result, read_result  # noqa: F401 (FINISHED: read from here too)

ID_FILE, LOCK_FILE, RUNNING_FILE = ".regbench-run", ".lock", ".running"
#: The launching command of a sweep holds this lock in its sweep dir (one sweep into a dir at a time).
SWEEP_LOCK = ".regbench-sweep.lock"
#: What Hydra and regbench write into a job's folder before the run id is: such a folder is ours.
STARTUP_FILES = {".hydra", "regbench.log", RUNNING_FILE, LOCK_FILE}


class RunDirConflict(UserError):
    """The run directory holds another configuration, or files regbench did not write."""


class RunDirBusy(UserError):
    """Another process trains in the run directory now."""


def owner(run_dir: Path) -> str | None:
    """The run id a directory belongs to: its id file, else its result.json, else its checkpoint; None if none."""
    run_dir = Path(run_dir)
    try:
        return (run_dir / ID_FILE).read_text().strip() or None
    except OSError:
        pass
    try:
        rid = json.loads((run_dir / RESULT_FILE).read_text()).get("run_id")
        if rid:
            return str(rid)
    except (OSError, ValueError, AttributeError):
        pass
    last = run_dir / "checkpoints" / "last.pt"
    if last.exists():
        from regbench import checkpoint

        return checkpoint.load(last)["state"]["run_id"]
    return None


def finished_result(run_dir: Path, rid: str, resume) -> Result | None:
    """The result of run ``rid`` if it already finished in ``run_dir`` and ``resume`` is on (nothing to train),
    else None. ``resume=best`` keeps finished runs too: it only changes where an unfinished run continues from.
    A damaged ``result.json`` is one line naming the file to move away (with resume=false it is replaced)."""
    from regbench.errors import RESULT_CHOICES, DamagedFile

    if resume not in (True, "best"):
        return None
    try:
        result = read_result(run_dir)
    except DamagedFile as e:
        raise DamagedFile(e.path, e.reason, RESULT_CHOICES) from None
    return result if result and result.run_id == rid and result.finished else None


def check_identity(run_dir: Path, rid: str) -> None:
    """Raise RunDirConflict unless ``run_dir`` is absent, empty, a start of ours, or holds run ``rid``."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise RunDirConflict(f"{run_dir} is a file, not a run directory; choose another hydra.run.dir")
    held = owner(run_dir)
    if held is None:
        foreign = sorted(p.name for p in run_dir.iterdir() if p.name not in STARTUP_FILES)
        if foreign:
            raise RunDirConflict(f"{run_dir} holds files regbench did not write ({', '.join(foreign[:3])}"
                                 f"{', …' if len(foreign) > 3 else ''}); choose another hydra.run.dir or an empty folder")
    elif held != rid:
        raise RunDirConflict(f"{run_dir} holds another configuration (run id {held}; this one is {rid}): "
                             "choose another name or hydra.run.dir/hydra.sweep.dir, or remove that folder")


def holder(run_dir: Path) -> str | None:
    """'host H, pid P (since T)' if a live process holds the run dir's lock now, else None."""
    lock = Path(run_dir) / LOCK_FILE
    if not lock.exists():
        return None
    try:
        with open(lock) as f:
            if _try_lock(f):
                return None  # free: the process that held it has ended
            return _describe_holder(run_dir)
    except OSError:
        return None


@contextmanager
def hold(run_dir: Path, rid: str):
    """Hold ``run_dir`` for run ``rid`` while the block runs: the lock, the id file, the ``.running`` note."""
    run_dir = Path(run_dir)
    lock = _open_lock(run_dir, LOCK_FILE)
    try:
        if not _try_lock(lock):
            raise RunDirBusy(f"{run_dir} is being trained by another process ({_describe_holder(run_dir)}); "
                             "wait for it, or stop it and re-run")
        check_identity(run_dir, rid)  # again, under the lock: nobody took the folder since the pre-check
        try:
            if not (run_dir / ID_FILE).exists():
                (run_dir / ID_FILE).write_text(rid + "\n")
            (run_dir / RUNNING_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        except OSError as e:
            raise UserError(f"cannot write to {run_dir}: {e.strerror}") from None
        _remove_leftover_temp_files(run_dir)
        try:
            yield
        finally:
            (run_dir / RUNNING_FILE).unlink(missing_ok=True)
    finally:
        lock.close()  # releases the lock


@contextmanager
def hold_sweep(sweep_dir: Path):
    """Hold ``sweep_dir`` for the launching command of one sweep while the block runs. A second ``regbench run -m``
    into the same dir (the same command started twice, or another sweep) is refused in one line: two sweeps in
    one dir would replace each other's plan and report each other's jobs."""
    sweep_dir = Path(sweep_dir)
    lock = _open_lock(sweep_dir, SWEEP_LOCK)
    try:
        if not _try_lock(lock):
            lock.seek(0)
            who = lock.read().strip() or "another process"
            raise RunDirBusy(f"{sweep_dir} is in use by another sweep ({who}); wait for it to end, or choose another "
                             "hydra.sweep.dir")
        lock.seek(0)
        lock.truncate()
        lock.write(f"host {socket.gethostname()}, pid {os.getpid()}, since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
        lock.flush()
        yield
    finally:
        lock.close()


@contextmanager
def exclusive(folder: Path, name: str):
    """Wait for, then hold, the exclusive lock on ``folder/name`` while the block runs (processes sharing a file,
    such as a search's workers taking trials from its study)."""
    import fcntl

    with _open_lock(Path(folder), name) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _open_lock(folder: Path, name: str):
    """``folder/name`` opened for a lock (and a note: read and append), the folder made if need be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return open(folder / name, "a+")
    except OSError as e:
        raise UserError(f"cannot write to {folder}: {e.strerror}") from None


def _try_lock(lock) -> bool:
    """Take the exclusive lock on an open file without waiting; False if another process holds it. The operating
    system releases it when the file is closed or the process ends, so a killed holder never blocks."""
    import fcntl

    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def is_running(run_dir: Path) -> bool:
    """True if a job trains in ``run_dir`` now: its lock is held, or its ``.running`` note names another
    host (which cannot be checked from here; a job killed there leaves the note until the sweep is re-run)."""
    if holder(run_dir) is not None:
        return True
    try:
        info = json.loads((Path(run_dir) / RUNNING_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("host") != socket.gethostname()


def _describe_holder(run_dir: Path) -> str:
    try:
        info = json.loads((Path(run_dir) / RUNNING_FILE).read_text())
        return f"host {info['host']}, pid {info['pid']}, since {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not named itself yet"


def _remove_leftover_temp_files(run_dir: Path) -> None:
    """Temporary files of an atomic write a kill or a full disk interrupted (``.<name>.<pid>.tmp``)."""
    for path in [*run_dir.glob(".*.tmp"), *run_dir.glob("checkpoints/.*.tmp")]:
        path.unlink(missing_ok=True)
