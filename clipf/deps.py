"""The static import graph of clipf, and the code dependencies of each DVC stage, read from the code itself.

Torch-free and import-free: every module is *parsed* (``ast``), never imported. An edge ``a -> b`` is

- an ``import`` / ``from ... import`` anywhere in ``a`` — module level or inside a function (a lazy import
  runs when that function does, so it is as much a dependency); relative imports resolved; ``from P import
  x`` is an edge to ``P.x`` when that is a module, else to ``P``;
- a string constant that names a clipf module exactly, or as ``"module:attribute"`` (``"clipf.train"``
  in ``torchrun -m clipf.train``, the ``"clipf.evaluate"`` of ``clipf/cli.py``'s command table, a
  registry's ``"clipf.objectives.clip:CLIP"``): code run by name in a subprocess or by ``importlib``.

Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first, so a module's *closure* (what
running it can execute) holds its packages' ``__init__`` files too; package data (``model_configs/``,
``paper/``, ``data/``, ``world/data/``) belongs to the modules that read it: a string constant equal to the
data folder's dotted name (``resources.files("clipf.paper")``) or to its path relative to the module,
in a statement that uses ``__file__`` (``Path(__file__).with_name("model_configs")``).

A DVC stage's code is what its command runs: ``clipf SUB ...`` (``clipf/cli.py`` and the module its
``COMMANDS`` table maps ``SUB`` to), ``python -m clipf.X`` / ``torchrun ... -m clipf.X``, and ``papermill
NB ...`` (the notebook file and every clipf module its code cells import). :func:`stage_code` is the
closure of those, as repository paths (a subpackage as its folder: :func:`code_paths`);
``clipf deps --check`` compares them with ``dvc.yaml`` and ``clipf deps --write`` rewrites the ``clipf/...``
entries of each stage's ``deps:`` (every other line of ``dvc.yaml`` is left as written).
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

PACKAGE = "clipf"
ROOT = Path(__file__).resolve().parent.parent  # the repository (the folder holding clipf/)
DATA_DIRS = ("model_configs", "paper", "data", "world/data")  # package data (pyproject package-data)


class DepsError(RuntimeError):
    """dvc.yaml's code deps are not what the code says (the message lists each stage's difference)."""


# ---------------------------------------------------------------- the graph


@dataclass
class Module:
    """One parsed clipf module: its file, the clipf modules it imports, the package data it reads."""

    name: str  # clipf.report.uta
    path: Path  # repository-relative: clipf/report/uta.py
    is_package: bool
    imports: dict[str, int] = field(default_factory=dict)  # imported module -> first line
    named: dict[str, int] = field(default_factory=dict)  # modules named by a string constant -> line
    private: list[tuple[int, str, str]] = field(default_factory=list)  # (line, module, _name) imported
    private_attrs: list[tuple[int, str, str]] = field(default_factory=list)  # (line, module, _attr) used
    data: set[str] = field(default_factory=set)  # package-data folders, repository-relative


@cache
def modules(root: Path = ROOT) -> dict[str, Module]:
    """Every module of the clipf package under ``root``, parsed."""
    found: dict[str, Module] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        rel = path.relative_to(root)
        if "__pycache__" in rel.parts:
            continue
        parts = list(rel.with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = Module(".".join(parts), rel, is_package)
    for mod in found.values():
        _parse(mod, found, root)
    return found


def _package_of(mod: Module) -> str:
    return mod.name if mod.is_package else mod.name.rpartition(".")[0]


def _resolve(mod: Module, level: int, target: str | None) -> str:
    if not level:
        return target or ""
    base = _package_of(mod).split(".")
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, target] if target else base)


def _parse(mod: Module, known: Mapping[str, Module], root: Path) -> None:
    tree = ast.parse((root / mod.path).read_text(encoding="utf-8"), str(mod.path))
    aliases: dict[str, str] = {}  # local name -> clipf module it is bound to

    def add(target: str, line: int) -> None:
        if target in known and target != mod.name:
            mod.imports.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == PACKAGE or a.name.startswith(PACKAGE + "."):
                    add(a.name, node.lineno)
                    aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(mod, node.level, node.module)
            if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in known:
                    add(sub, node.lineno)
                    aliases[a.asname or a.name] = sub
                else:
                    add(base, node.lineno)
                    if a.name.startswith("_") and not a.name.startswith("__") and base != mod.name:
                        mod.private.append((node.lineno, base, a.name))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            named = node.value.split(":", 1)[0] if ":" in node.value else node.value  # "module:attr"
            if named in known and named not in (mod.name, PACKAGE):
                mod.named.setdefault(named, node.lineno)
            elif node.value.replace(".", "/") in DATA_PATHS:
                mod.data.add(node.value.replace(".", "/"))
    for node in ast.walk(tree):  # `x._private` where x is a clipf module bound by an import
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and aliases[node.value.id] != mod.name
        ):
            mod.private_attrs.append((node.lineno, aliases[node.value.id], node.attr))
    here = (root / mod.path).parent
    for stmt in ast.walk(tree):
        if not isinstance(stmt, ast.stmt) or isinstance(stmt, ast.FunctionDef | ast.ClassDef | ast.If):
            continue
        names = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}
        if "__file__" not in names:
            continue
        for const in ast.walk(stmt):
            if isinstance(const, ast.Constant) and isinstance(const.value, str) and const.value:
                rel = _relative(here / const.value, root)  # Path(__file__).parent / "data", .with_name(...)
                if rel in DATA_PATHS:
                    mod.data.add(rel)


DATA_PATHS = {f"{PACKAGE}/{d}" for d in DATA_DIRS}


def _relative(path: Path, root: Path) -> str | None:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError):
        return None


def edges(root: Path = ROOT, named: bool = True) -> dict[str, set[str]]:
    """``module -> modules it imports`` (and, with ``named``, those it names as strings)."""
    out = {}
    for name, mod in modules(root).items():
        out[name] = set(mod.imports) | (set(mod.named) if named else set())
    return out


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (each an import cycle), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan, recursive: the graph is a few dozen modules deep at most
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def parents(name: str) -> list[str]:
    """The packages whose ``__init__`` runs before ``name``: ``clipf.report.uta`` -> clipf, clipf.report."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


DISPATCHER = f"{PACKAGE}.cli"  # `clipf SUB`: runs the one module COMMANDS maps SUB to


def closure(names: Iterable[str], root: Path = ROOT, dispatched: bool = False) -> set[str]:
    """Every module that running ``names`` can execute (imports, named modules, parent packages).
    ``dispatched``: :data:`DISPATCHER` is entered by a ``clipf SUB`` command whose module is among
    ``names``, so the other modules it names are not followed (unless other code imports it)."""
    known = modules(root)
    todo = [(n, True) for n in names]
    seen: set[str] = set()
    while todo:
        name, entry = todo.pop()
        if name in seen:
            continue
        if name not in known:
            raise DepsError(f"{name}: not a clipf module")
        mod = known[name]
        if name == DISPATCHER and dispatched and entry:
            seen.add(name)  # its named modules: only the one the command selects (in names)
            todo += [(m, False) for m in mod.imports]
            continue
        seen.add(name)
        todo += [(p, False) for p in parents(name) if p in known]
        todo += [(m, False) for m in sorted(set(mod.imports) | set(mod.named))]
    if dispatched and DISPATCHER in seen and any(DISPATCHER in known[m].imports for m in seen):
        return closure(names, root, dispatched=False)  # something imports the dispatcher: all it names
    return seen


def code_paths(names: Iterable[str], root: Path = ROOT, dispatched: bool = False) -> list[str]:
    """The repository paths of the closure of ``names``: its top-level modules' files, the package data
    they read, and the folder of every subpackage (``clipf/report``) one of whose modules is in it — a
    subpackage counts whole (importing any of its modules runs its ``__init__``, which re-exports the
    rest), so ``dvc.yaml`` stays readable at the price of a safe over-approximation."""
    known = modules(root)
    out: set[str] = set()
    for m in closure(names, root, dispatched):
        parts = known[m].path.parts
        out.add(Path(*parts[:2]).as_posix() if len(parts) > 2 else known[m].path.as_posix())
        out |= known[m].data
    return sorted(_collapse(out))


def _collapse(paths: set[str]) -> set[str]:
    """Drop paths that sit inside another path of the set."""
    return {p for p in paths if not any(p.startswith(q + "/") for q in paths if q != p)}


# ---------------------------------------------------------------- stage commands


@cache
def commands(root: Path = ROOT) -> dict[str, str]:
    """``clipf SUB`` -> the module it dispatches to (the ``COMMANDS`` table of clipf/cli.py, parsed)."""
    tree = ast.parse((root / PACKAGE / "cli.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "COMMANDS":
            table = ast.literal_eval(node.value)
            return {sub: module for sub, (module, _help) in table.items()}
    raise DepsError("clipf/cli.py: no COMMANDS table")


def notebook_imports(path: str | Path, root: Path = ROOT) -> set[str]:
    """The clipf modules the code cells of a notebook import (``from clipf import a, b``,
    ``from clipf.report import uta``, ``import clipf.x``)."""
    nb = json.loads((root / path).read_text(encoding="utf-8"))
    known = modules(root)
    out: set[str] = set()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = "".join(cell.get("source", []))
        src = "\n".join(ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name in known}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    if sub in known:
                        out.add(sub)
                    elif node.module in known:
                        out.add(node.module)
    return out


@dataclass
class StageCode:
    """What a stage's command runs: clipf modules and notebook files."""

    modules: set[str] = field(default_factory=set)
    notebooks: list[str] = field(default_factory=list)
    dispatched: bool = False  # entered through `clipf SUB`


def command_code(cmd: str, root: Path = ROOT) -> StageCode:
    """The clipf entry modules and notebooks of a stage command (``a && b`` / ``a; b`` each parsed)."""
    out = StageCode()
    table = commands(root)
    for part in re.split(r"&&|;|\|\|", cmd):
        argv = shlex.split(part)
        if not argv:
            continue
        prog = Path(argv[0]).name
        if prog == "clipf" and len(argv) > 1 and argv[1] in table:
            out.modules |= {DISPATCHER, table[argv[1]]}
            out.dispatched = True
        elif prog == "papermill":
            nb = next((a for a in argv[1:] if a.endswith(".ipynb")), None)
            if nb is None:
                raise DepsError(f"{cmd!r}: papermill without a notebook")
            out.notebooks.append(nb)
            out.modules |= notebook_imports(nb, root)
        elif "-m" in argv[:-1]:
            target = argv[argv.index("-m") + 1]
            if target.startswith(PACKAGE):
                out.modules.add(target)
    return out


def stage_code(cmd: str, root: Path = ROOT) -> list[str]:
    """The ``clipf/...`` code deps of a stage command: the closure of what it runs (:func:`code_paths`)."""
    code = command_code(cmd, root)
    return code_paths(code.modules, root, code.dispatched) if code.modules else []


# ---------------------------------------------------------------- dvc.yaml


def _stage_commands(dvc_yaml: Path) -> dict[str, str]:
    import yaml

    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return {name: (st.get("do") or st)["cmd"] for name, st in stages.items()}


_STAGE = re.compile(r"^  ([A-Za-z_][\w-]*):")
_DEPS = re.compile(r"^(\s+)deps:\s*$")
_ITEM = re.compile(r"^(\s+)- (\S.*?)\s*$")
_COMMENT = re.compile(r"^(\s+)#")
MARKER = "# code: the import closure of the command (generated: `clipf deps --write`)"


def _deps_blocks(lines: list[str]) -> dict[str, tuple[int, int, str]]:
    """Per stage, the (first, end) line indices of its ``deps:`` items (comments between them included)
    and their indent."""
    out: dict[str, tuple[int, int, str]] = {}
    stage = None
    i = 0
    while i < len(lines):
        m = _STAGE.match(lines[i])
        if m:
            stage = m.group(1)
        d = _DEPS.match(lines[i])
        if d and stage is not None:
            j = i + 1
            indent = None
            while j < len(lines):
                item = _ITEM.match(lines[j]) or _COMMENT.match(lines[j])
                if not item or (indent is not None and item.group(1) != indent):
                    break
                indent = item.group(1)
                j += 1
            out[stage] = (i + 1, j, indent or d.group(1) + "  ")
            i = j
            continue
        i += 1
    return out


def _items(lines: list[str]) -> list[str]:
    return [m.group(2) for m in map(_ITEM.match, lines) if m]


def declared(dvc_yaml: Path) -> dict[str, list[str]]:
    """The ``clipf/...`` entries of each stage's ``deps:`` in ``dvc_yaml``."""
    lines = dvc_yaml.read_text().splitlines()
    out = {}
    for stage, (a, b, _) in _deps_blocks(lines).items():
        out[stage] = [p for p in _items(lines[a:b]) if p.startswith(PACKAGE + "/")]
    return out


def expected(dvc_yaml: Path, root: Path = ROOT) -> dict[str, list[str]]:
    """The ``clipf/...`` deps each stage of ``dvc_yaml`` should have (:func:`stage_code` of its command)."""
    return {name: stage_code(cmd, root) for name, cmd in _stage_commands(dvc_yaml).items()}


def differences(dvc_yaml: Path, root: Path = ROOT) -> dict[str, tuple[list[str], list[str]]]:
    """Per stage whose code deps are wrong: (missing, extra)."""
    have, want = declared(dvc_yaml), expected(dvc_yaml, root)
    out = {}
    for stage, paths in want.items():
        got = have.get(stage, [])
        missing, extra = sorted(set(paths) - set(got)), sorted(set(got) - set(paths))
        if missing or extra:
            out[stage] = (missing, extra)
    return out


def write(dvc_yaml: Path, root: Path = ROOT) -> list[str]:
    """Rewrite the ``clipf/...`` entries of every stage's ``deps:`` in place (the rest of each list and of
    the file kept as written; the code deps go last, sorted). Returns the stages changed."""
    lines = dvc_yaml.read_text().splitlines()
    want = expected(dvc_yaml, root)
    changed = []
    blocks = _deps_blocks(lines)
    missing_block = sorted(s for s in want if want[s] and s not in blocks)
    if missing_block:
        raise DepsError(f"{dvc_yaml}: stage(s) without a deps: list: {', '.join(missing_block)}")
    for stage, (a, b, indent) in sorted(blocks.items(), key=lambda kv: -kv[1][0]):
        old = lines[a:b]
        kept = [ln for ln in old if ln.strip() != MARKER and not _is_code(ln)]
        code = want.get(stage, [])
        new = kept + ([f"{indent}{MARKER}"] if code else []) + [f"{indent}- {p}" for p in code]
        if new != old:
            changed.append(stage)
            lines[a:b] = new
    dvc_yaml.write_text("\n".join(lines) + "\n")
    return sorted(changed)


def _is_code(line: str) -> bool:
    m = _ITEM.match(line)
    return bool(m) and m.group(2).startswith(PACKAGE + "/")


def check(dvc_yaml: Path, root: Path = ROOT) -> None:
    """Raise :class:`DepsError` listing every stage whose ``clipf/...`` deps differ from its closure."""
    diff = differences(dvc_yaml, root)
    if diff:
        lines = [f"{dvc_yaml}: code deps out of date (`clipf deps --write` rewrites them):"]
        for stage, (missing, extra) in sorted(diff.items()):
            if missing:
                lines.append(f"  {stage}: missing {', '.join(missing)}")
            if extra:
                lines.append(f"  {stage}: not in its closure {', '.join(extra)}")
        raise DepsError("\n".join(lines))


def cli(argv: list[str] | None = None) -> int:
    """``clipf deps [--check | --write | --show STAGE | --graph]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="clipf deps",
        description="dvc.yaml's clipf/... code deps against the import closure of each stage's command",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if a stage's code deps are stale (default)")
    mode.add_argument("--write", action="store_true", help="rewrite the clipf/... deps of every stage")
    mode.add_argument("--show", metavar="STAGE", help="print one stage's code deps")
    mode.add_argument("--graph", action="store_true", help="print the import graph (module -> imports)")
    parser.add_argument("--dvc-yaml", default=str(ROOT / "dvc.yaml"))
    args = parser.parse_args(argv)
    dvc_yaml = Path(args.dvc_yaml)
    try:
        if args.graph:
            for name, targets in sorted(edges().items()):
                print(f"{name} -> {', '.join(sorted(targets)) or '-'}")
        elif args.show:
            want = expected(dvc_yaml)
            if args.show not in want:
                raise DepsError(f"no stage {args.show!r} in {dvc_yaml} (stages: {', '.join(want)})")
            print("\n".join(want[args.show]))
        elif args.write:
            changed = write(dvc_yaml)
            print(f"{dvc_yaml}: code deps rewritten in {len(changed)} stage(s) {' '.join(changed)}".rstrip())
        else:
            check(dvc_yaml)
            print(f"{dvc_yaml}: every stage's code deps are its command's import closure")
    except (DepsError, OSError, SyntaxError) as err:
        print(f"clipf deps: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
