"""Caption sources for word counting — torch-free: caption files cut into independent counting tasks.

Inputs are txt (one caption a line), csv/tsv/parquet (a caption column) and webdataset ``.tar`` shards
(their ``.txt`` members); paths, directories, globs and ``{a..b}`` brace patterns. :func:`units` cuts
them into units that count independently (txt byte ranges, parquet row groups, tar shards, csv files);
:func:`tasks` turns csv files into row batches read by the calling process (a csv record may span lines);
:func:`read_captions` yields one task's captions and records bad input in a ``stats`` dict (never
silently: invalid UTF-8 decoded with U+FFFD and counted, null cells counted, an unreadable tar shard
reported after what was read before the damage). Used by :func:`clipf.freq.build_table`.
"""

from __future__ import annotations

import csv
import glob
import os
import tarfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

SUFFIXES = {".txt": "txt", ".text": "txt", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".tar": "tar"}
Unit = tuple[str, str, Any, Any]  # (kind, path, a, b): txt byte range / parquet row group / csv sep+column
CHUNK_BYTES = 32 << 20  # txt chunk of one counting task (smaller with several workers)
CSV_ROWS = 65536  # csv/tsv rows per counting task
TAR_BLOCK = 512
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")  # gzip, bzip2, xz, zstd


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Input files: paths, directories (their supported files), globs and ``{a..b}`` brace patterns."""
    from braceexpand import braceexpand

    files: list[Path] = []
    for item in map(str, inputs):
        if Path(item).is_dir():
            found = sorted(p for p in Path(item).rglob("*") if p.suffix.lower() in SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{item}: directory holds no {'/'.join(SUFFIXES)} files")
            files += found
            continue
        if Path(item).exists():
            files.append(Path(item))
            continue
        names = [m for pat in braceexpand(item) for m in (sorted(glob.glob(pat)) or [pat])]
        missing = [n for n in names if not Path(n).is_file()]
        if missing:
            raise FileNotFoundError(f"input not found: {missing[0]}")
        files += map(Path, names)
    for f in files:
        if f.suffix.lower() not in SUFFIXES:
            raise ValueError(f"{f}: unsupported input kind {f.suffix!r}; use {', '.join(SUFFIXES)}")
    return files


def units(files: Sequence[Path], column: str, chunk_bytes: int | None, workers: int) -> list[Unit]:
    """Counting units, columns checked before anything is counted; txt files cut into byte ranges."""
    if chunk_bytes is None:
        txt = sum(f.stat().st_size for f in files if SUFFIXES[f.suffix.lower()] == "txt")
        chunk_bytes = CHUNK_BYTES if workers <= 1 else min(CHUNK_BYTES, max(1 << 18, txt // (4 * workers)))
    out: list[Unit] = []
    for f in files:
        kind = SUFFIXES[f.suffix.lower()]
        if kind == "txt":
            size = f.stat().st_size
            out += [
                (kind, str(f), s, min(s + chunk_bytes, size)) for s in range(0, max(size, 1), chunk_bytes)
            ]
        elif kind == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(f)
            if column not in pf.schema_arrow.names:
                raise ValueError(f"{f}: no column {column!r}; columns: {', '.join(pf.schema_arrow.names)}")
            out += [(kind, str(f), g, column) for g in range(pf.num_row_groups)]
        elif kind == "csv":
            sep = "\t" if f.suffix.lower() == ".tsv" else ","
            with open(f, encoding="utf-8", errors="replace", newline="") as fh:
                header = next(csv.reader(fh, delimiter=sep), [])
            if column not in header:
                raise ValueError(f"{f}: no column {column!r}; columns: {', '.join(header) or '(none)'}")
            out.append((kind, str(f), sep, column))
        else:
            out.append((kind, str(f), None, None))
    return out


def tasks(units: Sequence[Unit]) -> Iterator[Unit]:
    """Counting tasks: each unit, except csv files, read here in batches of :data:`CSV_ROWS` rows
    (a csv record may span lines, so the file cannot be cut by bytes)."""
    import pandas as pd

    for unit in units:
        if unit[0] != "csv":
            yield unit
            continue
        _, path, sep, col = unit
        reader = pd.read_csv(
            path, sep=sep, usecols=[col], dtype=str, keep_default_na=False, chunksize=CSV_ROWS,
            encoding_errors="replace",
        )  # fmt: skip
        for chunk in reader:
            yield ("rows", path, int(chunk.index[0]), chunk[col].tolist())


def _tar_number(raw: bytes) -> int:
    if raw[0] & 0x80:  # GNU base-256
        return int.from_bytes(raw[1:], "big")
    return int(raw.split(b"\0", 1)[0].strip() or b"0", 8)


def _tar_header_ok(hdr: bytes) -> bool:
    """The header checksum: the sum of its bytes with the checksum field read as spaces (unsigned, or
    signed as some old tars wrote it). The byte sum comes from adler32, whose low 16 bits are
    1 + the byte sum mod 65521 (one C call instead of a 512-byte Python sum)."""
    field = hdr[148:156]
    try:
        want = int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return False
    byte_sum = want + sum(field) - 256  # what the header's bytes must add up to
    if 0 <= byte_sum <= 255 * TAR_BLOCK and zlib.adler32(hdr) & 0xFFFF == (1 + byte_sum) % 65521:
        return True
    unsigned = sum(hdr) - sum(field) + 256
    return want == unsigned or want == unsigned - 256 * sum(b > 127 for b in hdr[:148] + hdr[156:])


def tar_texts(path: str) -> Iterator[tuple[str, bytes]]:
    """``(member name, data)`` of the regular ``.txt`` members of an uncompressed tar, read header by
    header (image data skipped by seeking): several times faster than :mod:`tarfile` on webdataset
    shards. Raises :class:`tarfile.ReadError` at a bad header, cut data or garbage after the end."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        long_name: bytes | None = None
        pax: dict[bytes, bytes] = {}
        at = 0
        while True:
            f.seek(at)
            hdr = f.read(TAR_BLOCK)
            if hdr[:1] in (b"", b"\0") and not hdr.strip(b"\0"):  # end-of-archive marker (or end of file)
                while rest := f.read(1 << 20):
                    if rest.strip(b"\0"):
                        raise tarfile.ReadError(f"truncated or garbage data after byte {at}")
                return
            if len(hdr) < TAR_BLOCK or not _tar_header_ok(hdr):
                raise tarfile.ReadError(f"bad or cut header at byte {at}")
            kind, start = hdr[156:157], at + TAR_BLOCK
            try:
                n = int(pax[b"size"]) if b"size" in pax else _tar_number(hdr[124:136])
            except ValueError:
                raise tarfile.ReadError(f"bad size field in the header at byte {at}") from None
            at = start + -(-n // TAR_BLOCK) * TAR_BLOCK
            name = hdr[:100].split(b"\0", 1)[0]
            if hdr[257:265] == b"ustar\x0000" and hdr[345]:
                name = hdr[345:500].split(b"\0", 1)[0] + b"/" + name
            name = long_name or pax.get(b"path") or name
            if start + n > size:
                raise tarfile.ReadError(
                    f"member {name.decode('utf-8', 'replace')!r}: data cut at byte {size}"
                )
            if kind == b"L":  # GNU long name of the next member
                long_name = f.read(n).split(b"\0", 1)[0]
            elif kind == b"x":  # PAX extended header of the next member: "<len> <key>=<value>\n" records
                data, pax = f.read(n), {}
                while data:
                    length = int(data.split(b" ", 1)[0])
                    key, _, value = data[:length].split(b" ", 1)[1].rstrip(b"\n").partition(b"=")
                    pax[key], data = value, data[length:]
            elif kind not in (b"g", b"K"):  # a member: the long name / PAX header applied to it
                long_name, pax = None, {}
                if kind in (b"0", b"\0", b"7") and name.endswith(b".txt"):
                    yield name.decode("utf-8", "replace"), f.read(n)


def txt_lines(path: str, start: int, end: int) -> Iterator[bytes]:
    """Lines starting in [start, end) (a line straddling ``start`` belongs to the previous chunk)."""
    with open(path, "rb") as f:
        if start:
            f.seek(start - 1)
            f.readline()
        while f.tell() < end:
            line = f.readline()
            if not line:
                break
            yield line.rstrip(b"\r\n")


def _tar_captions_slow(path: str) -> Iterator[tuple[str, bytes]]:
    """A compressed tar through :mod:`tarfile` (checked for data past the end marker)."""
    with tarfile.open(path, "r|*") as tf:
        for member in tf:
            if member.isfile() and member.name.endswith(".txt"):
                yield member.name, tf.extractfile(member).read()
        end = tf.offset
    with open(path, "rb") as f:
        f.seek(end)
        if f.read().strip(b"\0"):
            raise tarfile.ReadError(f"truncated or garbage data after byte {end}")


def read_captions(task: Unit, stats: dict[str, Any]) -> Iterator[str]:
    """Captions of one task; invalid UTF-8 -> U+FFFD (counted), null/unreadable records counted."""
    kind, path, a, b = task

    def decode(raw: bytes, where: Any) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            stats["invalid_utf8"] += 1
            stats.setdefault("first_invalid", where)
            return raw.decode("utf-8", "replace")

    if kind == "txt":
        for i, raw in enumerate(txt_lines(path, a, b)):
            stats["lines"] += 1
            yield decode(raw, i)
    elif kind == "tar":
        try:
            with open(path, "rb") as f:
                compressed = f.read(6).startswith(_COMPRESSED)
            for name, raw in (_tar_captions_slow if compressed else tar_texts)(path):
                yield decode(raw, f"member {name}")
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            stats["errors"].append(f"{path}: unreadable tar shard ({e}); counted what came before")
    elif kind == "parquet":
        import pyarrow.parquet as pq

        for value in pq.ParquetFile(path).read_row_group(a, columns=[b]).column(0).to_pylist():
            if isinstance(value, str):
                yield value
            else:
                stats["skipped"] += 1
    else:  # "rows": a batch of csv cells read by the main process (a: index of its first row)
        for i, value in enumerate(b):
            if "\ufffd" in value:
                stats["invalid_utf8"] += 1
                stats.setdefault("first_invalid", f"row {a + i + 1}")
            yield value
