"""``python -m cs231n_gen``: the same as the ``cs231n-gen`` command."""
import sys

from .cli import main

sys.exit(main())
