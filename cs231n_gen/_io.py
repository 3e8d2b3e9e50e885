"""Files the library writes and reads: atomic, checksummed, tensors only.

A file someone else wrote is untrusted, and a file this library wrote may have been cut
short by a crash or changed since. So:

- :func:`save` writes to a fresh temporary file in the target's own folder (created
  exclusively, so a symlink planted there is never followed), flushes and fsyncs it,
  then renames it over the target and fsyncs the folder. A reader sees the old file or
  the new one, never half of either; two writers to one path each write their own
  temporary file and the last rename wins whole.
- The payload is stored next to a SHA-256 digest of its contents (:func:`digest`: a
  canonical walk of nested dicts, lists and tuples of tensors and plain values).
- :func:`load` reads with ``torch.load(weights_only=True)``, which builds tensors and
  plain containers and refuses anything that would run code, then checks the digest.
  Every way a file can be unusable (truncated, not a zip, flipped bytes, a foreign
  pickle, another format) raises one :class:`UnusableFileError` naming the file.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import torch

FORMAT = "cs231n_gen"
FORMAT_VERSION = 1


class UnusableFileError(ValueError):
    """A file that cannot be used: unreadable, foreign, or changed since it was written."""


def _feed(h, obj) -> None:
    """Hash ``obj`` in a canonical order (types and shapes included, dict keys sorted)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        t = torch.empty(t.shape, dtype=t.dtype).copy_(t)  # standard strides (a size-1 dim may have stride 0)
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)};".encode())
        for key in sorted(obj, key=lambda k: (type(k).__name__, repr(k))):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)};".encode())
        for item in obj:
            _feed(h, item)
    elif obj is None or isinstance(obj, (bool, int, float, str, torch.dtype, torch.Size)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:
        raise TypeError(f"cannot store a {type(obj).__name__} in a cs231n_gen file (tensors and plain values only)")


def digest(obj) -> str:
    """SHA-256 (hex) of nested dicts / lists / tuples of tensors and plain values."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened or synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomically(path: Path, mode: str, write) -> None:
    """Call ``write(f)`` on a fresh temporary file next to ``path``, fsync it, rename it over ``path``.

    The temporary file is created exclusively with a unique name (two writers never share
    one, a planted symlink is never followed) and removed again if anything fails.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a unique temporary file in the same folder, fsync, rename."""
    _write_atomically(Path(path), "w", lambda f: f.write(text))


def save(payload, path) -> None:
    """Write ``payload`` (tensors and plain values) to ``path`` atomically, with its digest.

    Raises ``OSError`` when the folder cannot be written (read-only, full, missing and
    impossible to create), whatever layer notices it first.
    """
    path = Path(path)
    blob = {"format": FORMAT, "version": FORMAT_VERSION, "payload": payload, "sha256": digest(payload)}
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(f):
        try:
            torch.save(blob, f)
        except RuntimeError as err:  # torch reports some write failures as RuntimeError
            raise OSError(f"could not write {path}: {err}") from err

    _write_atomically(path, "wb", write)


def load(path):
    """The payload of a file written by :func:`save`, on the CPU, checked against its digest.

    Raises :class:`UnusableFileError` (naming the file and what is wrong) for anything
    but an intact file of this format. Nothing in the file is executed.
    """
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, flipped bytes, a pickle that would run code, ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise UnusableFileError(f"{path} is not a readable cs231n_gen file ({type(err).__name__}: {reason[:200]})") \
            from None
    if not (isinstance(blob, dict) and blob.get("format") == FORMAT and "payload" in blob and "sha256" in blob):
        raise UnusableFileError(f"{path} was not written by this version of cs231n_gen (unknown layout)")
    if blob.get("version") != FORMAT_VERSION:
        raise UnusableFileError(f"{path} has file format version {blob.get('version')!r}, "
                                f"this library reads version {FORMAT_VERSION}")
    try:
        ok = digest(blob["payload"]) == blob["sha256"]
    except TypeError:
        ok = False
    if not ok:
        raise UnusableFileError(f"{path} failed its checksum: it was changed or damaged after it was written")
    return blob["payload"]
