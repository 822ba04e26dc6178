"""On a SLURM cluster (``hydra/launcher=slurm``): a job that has finished stays finished.

submitit catches SLURM's preemption and time-limit signal (``USR2``) for the whole life of the job's process: its
Python handler checkpoints the call and requeues the job, or, once the job has used up its requeues
(``max_num_timeout``), raises. A signal that arrives after the job's work is done did harm either way (measured on
the local cluster, ``tests/slurm/``): while submitit wrote the result it requeued a job that had completed, which
then ran again; and in the last milliseconds of the interpreter's shutdown, when Python has already put the default
action back for every signal it handled, ``USR2`` killed the process, and SLURM marked the completed job ``FAILED``.

The preset's Hydra callback ends this: when the job's function has returned, submitit's handler is replaced by
``SIG_IGN``, which Python's shutdown leaves in place, so a late signal does nothing and the job exits 0
(``tests/slurm/test_preemption.py::test_a_late_signal_after_the_job_finished_is_ignored``). Until then nothing
changes: a preempted job is requeued and resumes from ``checkpoints/last.pt`` under the same run id.
"""

from __future__ import annotations

import signal
from typing import Any

from hydra.experimental.callback import Callback


class IgnoreLateSignals(Callback):
    """A Hydra callback (``hydra.callbacks.late_signal``, set by ``hydra/launcher=slurm``): once a job's function has
    returned inside a submitit job, submitit's requeue signal is ignored for the rest of the process."""

    def on_job_end(self, config: Any = None, job_return: Any = None, **kwargs: Any) -> None:
        ignore_late_signals()


def ignore_late_signals() -> bool:
    """If submitit's handler holds its requeue signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise), ignore that
    signal from now on (``SIG_IGN``: no Python handler, which the interpreter's shutdown would reset); True if it did.
    Elsewhere (not a submitit job, or another handler) nothing changes."""
    try:
        from submitit.core import logger
        from submitit.core.job_environment import JobEnvironment, SignalHandler

        usr_sig = JobEnvironment._usr_sig()
    except Exception:  # no submitit, or a signal name it does not know: it set no handler either
        return False
    handler = signal.getsignal(usr_sig)
    if not isinstance(getattr(handler, "__self__", None), SignalHandler):
        return False
    signal.signal(usr_sig, signal.SIG_IGN)
    logger.get_logger().info("Job finished: %s ignored from now on (a late signal neither requeues nor fails it)",
                             signal.Signals(usr_sig).name)
    return True
