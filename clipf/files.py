"""Atomic file writes and the names shared across modules — torch-free.

A reader (another process, a resumed run, DVC) never sees a half-written file: everything clipf writes
goes to a temporary sibling first, is flushed and fsynced, then ``os.replace``-d over the target. New
files get the usual ``0o666 & ~umask`` mode (``tempfile.mkstemp`` alone would leave them ``0600``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

FULL_CONTEXT = 32  # open_clip's text context length for the project's model configs
CONFIG_NAME = "open_clip_config.json"  # open_clip local-dir: model files
WEIGHTS_NAME = "open_clip_model.safetensors"


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(folder: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(os.fspath(folder) or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(fh)`` on a binary temp file beside ``path``, then move it over ``path``.

    On any error (including KeyboardInterrupt, a full disk) the temp file is removed and ``path`` keeps
    its previous content. The temp name starts with ``.`` and ends with ``.tmp``, so globs like ``*.pt``
    or ``*.json`` never match it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def json_default(obj: Any) -> Any:
    """JSON for numpy/torch scalars (``.item()``), paths (``str``), anything else (``repr``)."""
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


def write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = False) -> Path:
    """Write ``obj`` as indented JSON (+ newline) to ``path`` atomically; returns the path."""
    text = json.dumps(obj, indent=2, sort_keys=sort_keys, default=json_default)
    return write_text(path, text + "\n")


def atomic_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
    """``torch.save`` through :func:`atomic_write` (a crash leaves the old file or the new one, never
    a truncated ``*.pt``). A file object ``f`` is written directly."""
    import torch  # only the caller that saves tensors pays for it

    if not isinstance(f, str | os.PathLike):
        torch.save(obj, f, *args, **kwargs)
        return
    atomic_write(f, lambda fh: torch.save(obj, fh, *args, **kwargs))


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike) -> Iterator[Path]:
    """A fresh temporary sibling of ``out`` to write into; it replaces ``out`` only if the block ends
    without an error (a reader never sees a half-written folder), and is removed either way."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# A run stopped by a stop request (SIGTERM / SIGUSR1: preemption, the time limit) wrote a step checkpoint
# and exits with EXIT_REQUEUE; rank 0 also touches the file named by $CLIPF_PREEMPT_FILE when it is set
# (the batch script of `clipf submit` reads it, as torchrun reports any worker failure as exit 1).
EXIT_REQUEUE = 75  # EX_TEMPFAIL
PREEMPT_ENV = "CLIPF_PREEMPT_FILE"
