"""Model families, one a file."""
from .mlp import FourierTimeEmbedding, TimeMLP

__all__ = ["TimeMLP", "FourierTimeEmbedding"]
