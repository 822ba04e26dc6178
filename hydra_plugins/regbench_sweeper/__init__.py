"""regbench's Hydra sweeper (``hydra/sweeper=regbench``, regbench's default): see :mod:`.regbench_sweeper`."""
