"""Model families, one a file."""
from .clip import CLIP, ImageEncoder, TextEncoder
from .dit import DiT, patchify, unpatchify
from .gan_mlp import GaussianGenerator, MLPDiscriminator, MLPGenerator
from .mlp import FourierTimeEmbedding, TimeMLP
from .video_dit import VideoDiT, inflate

__all__ = ["DiT", "VideoDiT", "inflate", "TextEncoder", "ImageEncoder", "CLIP", "patchify", "unpatchify", "TimeMLP", "FourierTimeEmbedding", "MLPGenerator", "MLPDiscriminator",
           "GaussianGenerator"]
