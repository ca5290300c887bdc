"""One helper for the benchmarks that write their section of bench/README.md."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).parent / "README.md"


def write_section(heading: str, text: str, path: Path = README) -> None:
    """Replace (or append) the section that starts with ``heading`` (``## ...``), leaving the others alone."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    start = old.find(heading)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + 1)
        new = old[:start] + text + ("" if end < 0 else "\n" + old[end + 1 :])
    path.write_text(new, encoding="utf-8")
