"""cs231n-gen: the library behind the CS231n generative-models lectures."""
import os as _os

# Matrix products that give the same bits whatever the thread count (MKL's strict
# conditional numerical reproducibility; read by MKL at its first call, so set before any):
# the thread count may then follow the machine's load during training without changing
# its results (cs231n_gen.threads.LoadFollower). A value the user set is kept.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
from .runtime import budget, get_device, is_quick, seed_everything, start_lecture

__version__ = "0.1.0"

__all__ = ["get_device", "seed_everything", "budget", "is_quick", "start_lecture", "__version__"]
