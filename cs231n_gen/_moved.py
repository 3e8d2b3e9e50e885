"""Names the library once had and spells differently now: using one says where it went.

A module lists them in a table, ``{old name: (new spelling, what changed)}``, and sets
``__getattr__ = moved_names(__name__, table)``. Both ``module.old`` and ``from module
import old`` then raise :class:`MovedError` with the new spelling (an ``ImportError``,
so that the ``from`` form keeps the message).
"""
from __future__ import annotations


class MovedError(ImportError):
    """A name of an earlier version of the library: the message gives the new spelling."""


def moved_names(module: str, table: dict[str, tuple[str, str]]):
    """A module ``__getattr__`` that raises :class:`MovedError` for the names in ``table``."""
    def __getattr__(name: str):
        if name in table:
            new, why = table[name]
            raise MovedError(f"{module}.{name} is now {new}: {why}")
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return __getattr__
