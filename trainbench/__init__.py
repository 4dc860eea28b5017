"""trainbench: accuracy-versus-training-time tradeoff curves for training recipes."""

__version__ = "0.1.0"
