"""Model families, one a file."""
from .autoencoder import VAE, Decoder, Encoder, PatchDiscriminator, ResBlock
from .clip import CLIP, ImageEncoder, TextEncoder
from .dcgan import AdaIN, DCDiscriminator, DCGenerator, adain
from .dit import DiT, patchify, unpatchify
from .gpt import GPT
from .gan_mlp import ConditionalMLPGenerator, GaussianGenerator, MLPDiscriminator, MLPGenerator
from .linear_vae import LinearVAE, ppca_log_likelihood
from .mlp import FourierTimeEmbedding, TimeMLP
from .video_dit import VideoDiT, inflate
from .vq import VQVAE, VectorQuantizer, codebook_usage, vqvae_loss

__all__ = ["GPT", "VectorQuantizer", "VQVAE", "codebook_usage", "vqvae_loss", "DiT", "VideoDiT", "inflate",
           "TextEncoder", "ImageEncoder", "CLIP", "patchify", "unpatchify", "TimeMLP", "FourierTimeEmbedding",
           "MLPGenerator", "MLPDiscriminator", "GaussianGenerator", "ConditionalMLPGenerator",
           "VAE", "Encoder", "Decoder", "PatchDiscriminator", "ResBlock", "DCGenerator", "DCDiscriminator", "AdaIN",
           "adain", "LinearVAE", "ppca_log_likelihood"]
