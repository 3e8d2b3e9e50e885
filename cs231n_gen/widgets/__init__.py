"""Interactive explorers built from core ipywidgets (they render in JupyterLab,
Classic Notebook, VS Code and Colab without extra front-end packages).

``player`` holds the machinery (player, live figure, static strip); the explorers are
grouped by the lecture that uses them. Each ``*_explorer`` / ``*_player`` draws a
static figure first (``static=True``), so the notebook still tells its story where
widgets do not run, then returns the widget.
"""
from .autoregressive import sampling_explorer
from .distillation import SwitchPlayer, reflow_player
from .rectified_flow import flow_player, interpolation_explorer
from .player import FRAME_DPI, FramePlayer, frame_picks, live_figure, static_strip
from .gans import gan_training_player, latent_interpolation
from .generalized import path_explorer
from .guidance import guidance_explorer
from .latent import decoder_comparison, guidance_samples
from .schedules import time_sampler_explorer
from .text_to_image import PromptBox, clip_player, prompt_box
from .transformers import token_grid

__all__ = ["FRAME_DPI", "FramePlayer", "live_figure", "static_strip", "frame_picks",
           "gan_training_player", "latent_interpolation", "flow_player", "interpolation_explorer",
           "guidance_explorer", "time_sampler_explorer", "path_explorer", "decoder_comparison", "guidance_samples",
           "token_grid", "prompt_box", "PromptBox", "clip_player", "reflow_player", "SwitchPlayer",
           "sampling_explorer"]
