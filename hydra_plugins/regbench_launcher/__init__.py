"""regbench's SLURM launcher (``hydra/launcher=slurm``, and `regbench submit`): see :mod:`.regbench_launcher`."""
