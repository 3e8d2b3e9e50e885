"""Model families, one a file."""
from .dit import DiT, patchify, unpatchify
from .gan_mlp import GaussianGenerator, MLPDiscriminator, MLPGenerator
from .mlp import FourierTimeEmbedding, TimeMLP

__all__ = ["DiT", "patchify", "unpatchify", "TimeMLP", "FourierTimeEmbedding", "MLPGenerator", "MLPDiscriminator",
           "GaussianGenerator"]
