"""clipf.upstream: every replaced third-party global is still there, with the signature recorded in the
table, and still looked up by the upstream code that uses it; the context manager puts every original
back (on exit, on an exception, on a failure half-way through applying); no other clipf module replaces
a third-party global."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import types
from pathlib import Path

import pytest

from clipf import upstream

PACKAGE = Path(upstream.__file__).parent
THIRD_PARTY = {"open_clip", "open_clip_train", "clip_benchmark", "webdataset", "tqdm", "torch", "torchvision"}


def _names(code: types.CodeType) -> set[str]:
    """Every global / attribute name a function's code (nested functions included) looks up."""
    out = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out |= _names(const)
    return out


def _where(p: upstream.Patch) -> str:
    try:
        installed = importlib.metadata.version(p.package)
    except importlib.metadata.PackageNotFoundError:
        installed = "not installed"
    return f"{p.target}: checked against {p.package} {p.checked}, installed {installed}"


@pytest.mark.parametrize("patch", upstream.PATCHES, ids=[p.target for p in upstream.PATCHES])
def test_target_exists_with_the_recorded_signature(patch):
    module = importlib.import_module(patch.module)
    assert hasattr(module, patch.attribute), f"{_where(patch)}: the target is gone"
    target = getattr(module, patch.attribute)
    for sub, recorded in patch.signatures.items():
        obj = target
        for name in filter(None, sub.split(".")):
            assert hasattr(obj, name), f"{_where(patch)}: {sub} is gone"
            obj = getattr(obj, name)
        got = upstream.signature(obj)
        assert got == recorded, (
            f"{_where(patch)}: the signature of {patch.target}{'.' + sub if sub else ''} changed\n"
            f"  recorded: {recorded}\n  now:      {got}\n"
            "re-check the replacement against the new code, then update the row in clipf/upstream.py"
        )


@pytest.mark.parametrize("patch", upstream.PATCHES, ids=[p.target for p in upstream.PATCHES])
def test_target_is_still_looked_up_by_its_user(patch):
    """A replaced name only matters if the upstream code still looks it up at call time."""
    user = upstream.resolve(patch.used_by)
    assert patch.attribute in _names(user.__code__), (
        f"{_where(patch)}: {patch.used_by} no longer names {patch.attribute!r}: the patch does nothing"
    )


def _dummy_hooks(group: str) -> dict:
    needed = {h for p in upstream.PATCHES if p.group == group for h in p.hooks}
    return {h: (lambda *a, _h=h, **k: _h) for h in needed}


def _current(p: upstream.Patch):
    return getattr(importlib.import_module(p.module), p.attribute)


@pytest.mark.parametrize("group", upstream.GROUPS)
def test_patched_restores_every_original_on_exit_and_on_an_exception(group):
    rows = [p for p in upstream.PATCHES if p.group == group]
    before = {p.target: _current(p) for p in rows}
    with upstream.patched(group, **_dummy_hooks(group)):
        for p in rows:
            assert _current(p) is not before[p.target], p.target
            assert upstream.original(p.target) is before[p.target]
    assert all(_current(p) is before[p.target] for p in rows)
    with pytest.raises(RuntimeError, match="boom"), upstream.patched(group, **_dummy_hooks(group)):
        raise RuntimeError("boom")
    assert all(_current(p) is before[p.target] for p in rows)
    assert all(upstream.original(p.target) is before[p.target] for p in rows)  # nothing left saved


def test_a_failure_while_applying_restores_what_was_applied(monkeypatch):
    rows = [p for p in upstream.PATCHES if p.group == "train"]
    before = {p.target: _current(p) for p in rows}

    def fail(original, hooks):
        raise RuntimeError("cannot build")

    broken = upstream.Patch(
        group="train", target="open_clip_train.main.main", replacement="-", why="-", package="-",
        checked="-", signatures={}, used_by="-", build=fail,
    )  # fmt: skip
    monkeypatch.setattr(upstream, "PATCHES", (*upstream.PATCHES, broken))
    with (
        pytest.raises(RuntimeError, match="cannot build"),
        upstream.patched("train", **_dummy_hooks("train")),
    ):
        pytest.fail("the block must not run")
    assert all(_current(p) is before[p.target] for p in rows)


def test_nested_patches_and_original():
    target = "open_clip.factory.resize_text_pos_embed"
    stock = upstream.original(target)
    with upstream.patched("text_pos_resize", resize_text_pos_embed="outer"):
        with upstream.patched("text_pos_resize", resize_text_pos_embed="inner"):
            assert upstream.resolve(target) == "inner" and upstream.original(target) is stock
        assert upstream.resolve(target) == "outer"
    assert upstream.resolve(target) is stock


def test_hooks_must_match_the_group():
    with pytest.raises(TypeError, match="missing hooks"), upstream.patched("text_pos_resize"):
        pass
    with pytest.raises(TypeError, match="unexpected"), upstream.patched("clip_benchmark_quiet", extra=1):
        pass
    with pytest.raises(ValueError, match="unknown patch group"), upstream.patched("nope"):
        pass


def _third_party_replacements(path: Path) -> list[str]:
    """``module.attr = ...`` / ``setattr(module, ...)`` on a module imported from a third-party package."""
    tree = ast.parse(path.read_text())
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in THIRD_PARTY:
                    modules.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in THIRD_PARTY:
            for a in node.names:
                try:
                    is_module = importlib.util.find_spec(f"{node.module}.{a.name}") is not None
                except (ImportError, ValueError):
                    is_module = False
                if is_module:  # a submodule (from open_clip import factory)
                    modules.add(a.asname or a.name)
    found = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        for t in targets:
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in modules:
                found.append(f"{path.name}:{node.lineno}: {t.value.id}.{t.attr} = ...")
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Name) and first.id in modules:
                found.append(f"{path.name}:{node.lineno}: setattr({first.id}, ...)")
    return found


def test_no_other_module_replaces_third_party_globals():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != "upstream.py":
            found += _third_party_replacements(path)
    assert not found, "third-party globals replaced outside clipf/upstream.py:\n" + "\n".join(found)
