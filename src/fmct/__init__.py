"""fmct: 3D self-supervised foundation models for head CT."""

__version__ = "0.1.0"
