"""The layout rules of docs/ARCHITECTURE.md, checked on the static import graph of clipf/ (read from the
code with clipf.deps: every import, module-level or inside a function; nothing is imported here).

- no import cycles (lazy imports included);
- no module imports another module's private names (`from clipf.x import _y`, `x._y` on a clipf module);
- the library layer imports nothing from the engine, the objectives, training, evaluation, the report or
  the orchestration;
- no source file over 900 lines.

Each failure message lists every offender (module, line), not only the first.
"""

from __future__ import annotations

from pathlib import Path

from clipf import deps

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 900
LIBRARY = (
    "clipf.text",
    "clipf.files",
    "clipf.upstream",
    "clipf.masking",
    "clipf.freq",
    "clipf.pos",
    "clipf.models",
    "clipf.export",
    "clipf.world",
    "clipf.sources",
    "clipf.metrics",
)
ABOVE_LIBRARY = (
    "clipf.engine",
    "clipf.objectives",
    "clipf.train",
    "clipf.uta",
    "clipf.evaluate",
    "clipf.collect",
    "clipf.report",
    "clipf.study",
    "clipf.profiles",
    "clipf.submit",
    "clipf.cli",
)


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def imports() -> dict[str, deps.Module]:
    deps.modules.cache_clear()
    return deps.modules(REPO)


def test_no_import_cycles():
    mods = imports()
    graph = {name: set(m.imports) for name, m in mods.items()}
    found = deps.cycles(graph)
    lines = []
    for comp in found:
        inside = set(comp)
        lines.append(" <-> ".join(comp))
        for name in comp:
            for target in sorted(graph[name] & inside):
                lines.append(f"    {mods[name].path}:{mods[name].imports[target]} imports {target}")
    assert not found, f"{len(found)} import cycle(s) (lazy imports included):\n" + "\n".join(lines)


def test_no_private_names_across_modules():
    offenders = []
    for mod in imports().values():
        for line, target, name in mod.private:
            offenders.append(f"{mod.path}:{line}: from {target} import {name}")
        for line, target, name in mod.private_attrs:
            offenders.append(f"{mod.path}:{line}: {target}.{name}")
    assert not offenders, f"{len(offenders)} use(s) of another module's private names:\n" + "\n".join(
        sorted(offenders)
    )


def test_the_library_imports_nothing_above_it():
    offenders = []
    for name, mod in imports().items():
        if not within(name, LIBRARY):
            continue
        for target, line in sorted(mod.imports.items()):
            if within(target, ABOVE_LIBRARY):
                offenders.append(f"{mod.path}:{line}: {name} imports {target}")
    assert not offenders, "the library layer imports the layers above it:\n" + "\n".join(offenders)


def test_no_source_file_over_900_lines():
    sizes = {p.relative_to(REPO): len(p.read_text().splitlines()) for p in (REPO / "clipf").rglob("*.py")}
    big = sorted((n, str(p)) for p, n in sizes.items() if n > MAX_LINES)
    assert not big, f"source files over {MAX_LINES} lines:\n" + "\n".join(f"  {p}: {n}" for n, p in big[::-1])


def test_the_checks_see_what_they_should(tmp_path):
    """The checks themselves: a lazy cycle, a private import and a private attribute are all found."""
    (tmp_path / "clipf").mkdir()
    (tmp_path / "clipf" / "__init__.py").write_text("")
    (tmp_path / "clipf" / "a.py").write_text("def f():\n    from clipf import b\n    return b._x\n")
    (tmp_path / "clipf" / "b.py").write_text("from clipf.a import _helper\n_x = 1\n")
    deps.modules.cache_clear()
    mods = deps.modules(tmp_path)
    assert deps.cycles({n: set(m.imports) for n, m in mods.items()}) == [["clipf.a", "clipf.b"]]
    assert mods["clipf.a"].private_attrs == [(3, "clipf.b", "_x")]
    assert mods["clipf.b"].private == [(1, "clipf.a", "_helper")]
    deps.modules.cache_clear()
