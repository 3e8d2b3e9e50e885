"""Model families, one a file."""
from .clip import CLIP, ImageEncoder, TextEncoder
from .dit import DiT, patchify, unpatchify
from .gpt import GPT
from .gan_mlp import ConditionalMLPGenerator, GaussianGenerator, MLPDiscriminator, MLPGenerator
from .mlp import FourierTimeEmbedding, TimeMLP
from .video_dit import VideoDiT, inflate
from .vq import VQVAE, VectorQuantizer, codebook_usage, vqvae_loss

__all__ = ["GPT", "VectorQuantizer", "VQVAE", "codebook_usage", "vqvae_loss", "DiT", "VideoDiT", "inflate", "TextEncoder", "ImageEncoder", "CLIP", "patchify", "unpatchify", "TimeMLP", "FourierTimeEmbedding", "MLPGenerator", "MLPDiscriminator",
           "GaussianGenerator", "ConditionalMLPGenerator"]
