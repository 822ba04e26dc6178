"""regbench: reproducible ablation studies of deep-learning regularization."""

__version__ = "0.2.0"
