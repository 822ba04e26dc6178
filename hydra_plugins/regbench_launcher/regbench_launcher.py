"""regbench's SLURM launcher: hydra-submitit-launcher's ``SlurmLauncher`` (the same resources, executor, requeueing
and job function), whose launch submits one array task per stack of a sweep (its leader trains every member) and per
run that trains alone, where the plugin's submits every job and a member's task only reports its leader's result.
Under `regbench run -m` it waits for the tasks; under `regbench submit` it returns once they are submitted
(:func:`regbench.sweep.submit.launch`).

``conf/hydra/launcher/slurm.yaml`` names it; `regbench submit` sets it for ``hydra/launcher=submitit_slurm`` too.
Hydra imports this module whenever it starts (its plugin scan); regbench is imported when a sweep launches. Without
hydra-submitit-launcher (the ``launchers`` extra) there is no class here, and Hydra says that the preset's target
is unknown."""

from __future__ import annotations

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
except ImportError:  # the launchers extra is not installed
    SlurmLauncher = None

if SlurmLauncher is not None:

    class RegbenchSlurmLauncher(SlurmLauncher):
        """``SlurmLauncher`` with regbench's launch: a task per stack or run alone (:func:`regbench.sweep.submit.launch`)."""

        def launch(self, job_overrides, initial_job_idx):
            from regbench.sweep.submit import launch

            return launch(self, job_overrides, initial_job_idx)
