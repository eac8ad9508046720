"""ablation: evidence-based ablation studies for frame-level phoneme classification."""

__version__ = "0.1.0"
