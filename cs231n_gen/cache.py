"""Trained helpers (judges, autoencoders) cached on disk, keyed by what made them.

A cached model is stored under a name and a key: a hash of its configuration (a dict
of plain values) and of the library version, so changing either trains a new one
instead of loading a stale one. Files go through :mod:`cs231n_gen._io` (atomic,
checksummed, tensors only). A file that fails to load, fails its checksum, or fails
the caller's own check (e.g. a re-measured accuracy) is reported in one printed line and
retrained over, never trusted.

When the cache folder cannot be written (read-only home, full disk), the model is kept
in memory for the rest of the session and a warning is shown once; training goes on.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

from . import _io

CACHE_ENV = "CS231N_GEN_CACHE"

_memory: dict[str, object] = {}  # payloads that could not be written to disk, by path
_warned: set[str] = set()


def cache_dir() -> Path:
    """Where trained helpers are cached: $CS231N_GEN_CACHE, else ~/.cache/cs231n_gen."""
    explicit = os.environ.get(CACHE_ENV)
    return Path(explicit) if explicit else Path.home() / ".cache" / "cs231n_gen"


def cache_key(config: dict) -> str:
    """A short hash of ``config`` (JSON-serialisable plain values) and the library version."""
    from . import __version__

    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict of plain values, got {type(config).__name__}")
    try:
        text = json.dumps({"config": config, "version": __version__}, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config must hold only JSON-serialisable plain values: {err}") from None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(name: str, config: dict) -> Path:
    """The file for ``name`` under ``config``: ``<cache_dir>/<name>_<key>.pt``."""
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
        raise ValueError(f"name must be a non-empty string of letters, digits and _, got {name!r}")
    return cache_dir() / f"{name}_{cache_key(config)}.pt"


def load(name: str, config: dict, verify=None):
    """The cached payload for ``(name, config)``, or None when there is none to trust.

    ``verify(payload)`` may return a reason (a string) to reject an intact file, e.g.
    an accuracy that no longer matches; the reason is printed and None returned.
    """
    path = cache_path(name, config)
    if str(path) in _memory:
        payload, where = _memory[str(path)], "copy kept in memory"
    elif path.exists():
        try:
            payload, where = _io.load(path), f"cached file {path}"
        except _io.UnusableFileError as err:
            print(f"cs231n_gen: retraining {name}: {err}")
            return None
    else:
        return None
    reason = verify(payload) if verify is not None else None
    if reason:
        print(f"cs231n_gen: retraining {name}: the {where} {reason}")
        _memory.pop(str(path), None)
        return None
    return payload


def store(name: str, config: dict, payload) -> Path | None:
    """Save ``payload`` for ``(name, config)``; returns the path, or None when it stayed in memory."""
    path = cache_path(name, config)
    try:
        _io.save(payload, path)
    except OSError as err:
        _memory[str(path)] = payload
        if str(path) not in _warned:
            _warned.add(str(path))
            warnings.warn(f"cs231n_gen could not write its cache ({err}); {name} is kept in memory for this "
                          f"session and will be trained again in the next one. Set {CACHE_ENV} to a writable "
                          "folder to keep it.", RuntimeWarning, stacklevel=2)
        return None
    _memory.pop(str(path), None)
    return path
