"""Model families, one a file."""
from .gan_mlp import GaussianGenerator, MLPDiscriminator, MLPGenerator
from .mlp import FourierTimeEmbedding, TimeMLP

__all__ = ["TimeMLP", "FourierTimeEmbedding", "MLPGenerator", "MLPDiscriminator", "GaussianGenerator"]
