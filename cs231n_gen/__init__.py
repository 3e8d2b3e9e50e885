"""cs231n-gen: the library behind the CS231n generative-models lectures."""
from .runtime import budget, get_device, is_quick, seed_everything, start_lecture

__version__ = "0.1.0"

__all__ = ["get_device", "seed_everything", "budget", "is_quick", "start_lecture", "__version__"]
