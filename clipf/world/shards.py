"""Byte-level output: image encoding, deterministic tar shards written atomically, brace patterns."""

from __future__ import annotations

import io
import math
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

EXTENSIONS = {"jpg": "jpg", "png": "png"}


def encode_image(pixels: np.ndarray | Image.Image, fmt: str = "jpg", quality: int = 95) -> bytes:
    """PNG (lossless, zlib level 1) or JPEG (``quality``, no chroma subsampling: colours survive at 32 px)."""
    buf = io.BytesIO()
    img = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=1)
    elif fmt == "jpg":
        img.save(buf, format="JPEG", quality=int(quality), subsampling=0)
    else:
        raise ValueError(f"image format must be png or jpg, got {fmt!r}")
    return buf.getvalue()


def _header(name: str, size: int) -> bytes:
    """A POSIX ustar header for a regular file (mode 0644, owner 0:0, mtime 0): the bytes
    ``tarfile.TarInfo.tobuf(USTAR_FORMAT)`` gives for such a member, at a fraction of its cost."""
    raw = name.encode("utf-8")
    if len(raw) > 100:
        raise ValueError(f"member name too long for a ustar header: {name!r}")
    head = b"".join(
        (
            raw.ljust(100, b"\0"),
            b"0000644\0",
            b"0000000\0",
            b"0000000\0",
            b"%011o\0" % size,
            b"00000000000\0",
            b"        ",  # checksum placeholder
            b"0",
            b"\0" * 100,
            b"ustar\x0000",
            b"\0" * 32,
            b"\0" * 32,
            b"\0" * 16,  # devmajor, devminor: empty for a regular file
            b"\0" * 155,
        )
    ).ljust(512, b"\0")
    checksum = b"%06o\0 " % sum(head)
    return head[:148] + checksum + head[156:]


def tar_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A ustar archive of ``(name, data)`` regular-file members, deterministic (fixed mtime, owner, mode),
    byte-identical to what ``tarfile`` writes for them (two zero blocks, padded to 10240 bytes)."""
    parts = []
    for name, data in members:
        parts += [_header(name, len(data)), data, b"\0" * (-len(data) % 512)]
    parts.append(b"\0" * 1024)
    body = b"".join(parts)
    return body + b"\0" * (-len(body) % tarfile.RECORDSIZE)


def write_tar(path: str | Path, members: Iterable[tuple[str, bytes]]) -> int:
    """Write ``(name, data)`` members as a tar at ``path``; returns its size in bytes.

    Deterministic (:func:`tar_bytes`) and atomic: written to ``path.tmp`` and fsynced, then renamed, so a
    crash or a full disk never leaves a shard under its final name that looks complete.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    data = tar_bytes(members)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(data)


def shard_name(index: int, n_shards: int) -> str:
    """img2dataset's shard names: ``00000.tar`` (5 digits, more when there are more shards)."""
    return f"{index:0{max(5, len(str(n_shards - 1)))}d}.tar"


def key_digits(shard_size: int) -> int:
    """img2dataset's sample-id width inside a shard: ceil(log10(samples per shard))."""
    return max(1, math.ceil(math.log10(shard_size))) if shard_size > 1 else 1


def brace_pattern(folder: str | Path, names: list[str]) -> str:
    """``folder/{first..last}.tar`` for consecutive shard names (one shard: its path)."""
    names = sorted(names)
    if not names:
        raise ValueError(f"{folder}: no shards")
    if len(names) == 1:
        return str(Path(folder) / names[0])
    stems = [Path(n).stem for n in names]
    return str(Path(folder) / f"{{{stems[0]}..{stems[-1]}}}.tar")
