"""regbench: reproducible ablation studies of deep-learning regularization."""

__version__ = "0.1.0"
