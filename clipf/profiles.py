"""Study profiles: data in ``params.yaml``, resolved here into the concrete configuration DVC reads.

``params.yaml`` holds ``defaults:`` and ``profiles:`` (one entry per profile: smoke, demo, study, cc3m,
cc12m, laion400m), each a partial copy of the stage sections (``data``, ``freq``, ``launch``,
``pretrain``, ``finetune``, ``eval``, ``report``) plus a ``grid:`` spec and a ``uta:`` spec (UTA students
taught by a cell of the grid, :func:`expand_uta`). ``profile:`` selects one.

DVC's ``foreach`` must be static, so :func:`plan` writes the selected profile, resolved (defaults
deep-merged with the profile, grid expanded into named cells), into *live* top-level sections of
``params.yaml``; ``dvc.yaml`` reads only those. ``plan:`` records which profile (and a fingerprint of
it) the live sections came from, so :func:`check` can refuse a stale plan (e.g. after
``dvc exp run -S profile=smoke``) instead of silently running the old grid. Live sections may be
edited for one-off experiments (``dvc exp run -S pretrain.epochs=5``); grid changes go through the
profile and ``clipf study``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from clipf.freq import DEFAULT_RULE, RULES

SECTIONS = ("data", "freq", "launch", "pretrain", "finetune", "eval", "report")
UTA_CELL_KEYS = ("uta_cells", "uta_finetunes")  # UTA students; those fine-tuned (empty: uta.finetune off)
LIVE_KEYS = ("plan", *SECTIONS, "uta", "worlds", "cells", *UTA_CELL_KEYS)
WORLD_DIR = "data/{world}"  # a world's data (the data stage's out; dvc.yaml spells the same paths)
WORLD_TABLE = "data/{world}-freq.json"  # its word-frequency table (the freq stage's out)
_WORLD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MASKER_NAMES = ("truncate", "block", "random", "shuffle", "syntax", "frequency")
BASELINES = ("clip", "flip")
GRID_KEYS = {
    "worlds": [],
    "maskers": [],
    "text_tokens": [],
    "image_mask": 0.75,
    "seeds": [0],
    "baselines": [],
    "full_text_tokens": 32,
    "thresholds": [],
    "sweep_text_tokens": 8,
    "extra": [],
}
DATA_SOURCES = ("embedded", "shards")
UTA_KEYS = {
    "seeds": [],
    "world": None,
    "teacher": "clip",
    "model": None,
    "mask_ratio": 0.5,
    "masker": "reversed_block",
    "epochs": "matched",
    "finetune": True,
    "options": {},
    "map_grid": 14,
    "map_samples": 5000,
}
UTA_TEACHERS = ("clip",)  # or a cell name, `{seed}` standing for the student's seed
UTA_MASKERS = ("random", "block", "reversed_block", "reversed-block", "reversed", "blockwise")  # clipf.uta's


class ProfileError(ValueError):
    """A profile, grid value or live plan that cannot be used; the message names it."""


def load(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise ProfileError(f"{path}: no such params file")
    return yaml.safe_load(path.read_text()) or {}


def deep_merge(base: Mapping, over: Mapping) -> dict:
    """``base`` updated by ``over``: mappings merge key by key, anything else is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _num(x: float) -> str:
    """A threshold as a name fragment without dots: 0.0001 -> 1e-4, 0.00025 -> 2p5e-4."""
    mantissa, exp = f"{x:.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exp)}".replace(".", "p")


def cell_name(
    masker: str,
    text_tokens: int,
    image_mask: float,
    seed: int,
    threshold: float | None = None,
    rule: str | None = None,
    world: str | None = None,
) -> str:
    """``concepts-frequency-k8-m75-t1e-3-s0``: a run directory name that spells out the cell, its world
    first; a frequency rule other than the released one is named (``...-t1e-3-clamped-s0``), so cells
    of two rules never share a run. ``world`` None: no world part (a run outside a study plan)."""
    parts = [world] if world else []
    parts += [
        masker,
        f"k{int(text_tokens)}",
        "m" + f"{round(float(image_mask) * 100, 4):g}".replace(".", "p"),
    ]
    if threshold is not None:
        parts.append(f"t{_num(float(threshold))}")
    if rule is not None and rule != DEFAULT_RULE:
        parts.append(str(rule))
    parts.append(f"s{int(seed)}")
    return "-".join(parts)


def make_cell(
    masker: str,
    text_tokens: int,
    image_mask: float,
    seed: int,
    threshold: float | None,
    rule: str | None = None,
    world: str | None = None,
) -> dict:
    """A grid cell: its world, masker, text_tokens, image_mask, seed, and the frequency masker's
    threshold and rule (``rule`` None: the released one; both None for the other maskers)."""
    freq = masker == "frequency"
    return {
        **({"world": world} if world else {}),
        "masker": masker,
        "text_tokens": int(text_tokens),
        "image_mask": float(image_mask),
        "seed": int(seed),
        "threshold": float(threshold) if freq and threshold is not None else None,
        "rule": (rule or DEFAULT_RULE) if freq else None,
    }


def check_world_name(where: str, name: object) -> str:
    """A world's name: lower-case letters, digits and ``_`` (it starts run names and data paths)."""
    if not isinstance(name, str) or not _WORLD_NAME.match(name):
        raise ProfileError(
            f"{where}: a world is named by [a-z][a-z0-9_]* (no '-': it starts cell names), got {name!r}"
        )
    return name


def _check_cell(where: str, cell: Mapping) -> None:
    masker, k, r = cell.get("masker"), cell.get("text_tokens"), cell.get("image_mask")
    if masker not in MASKER_NAMES:
        raise ProfileError(f"{where}: unknown masker {masker!r} (known: {', '.join(MASKER_NAMES)})")
    if not isinstance(k, int) or isinstance(k, bool) or not 3 <= k <= 77:
        raise ProfileError(f"{where}: text_tokens must be an integer in [3, 77], got {k!r}")
    if not isinstance(r, int | float) or not 0.0 <= float(r) < 1.0:
        raise ProfileError(f"{where}: image_mask must be a ratio in [0, 1), got {r!r}")
    if not isinstance(cell.get("seed"), int):
        raise ProfileError(f"{where}: seed must be an integer, got {cell.get('seed')!r}")
    t = cell.get("threshold")
    if t is not None and (not isinstance(t, int | float) or not t > 0):
        raise ProfileError(f"{where}: threshold must be a positive number, got {t!r}")
    if masker == "frequency" and t is None:
        raise ProfileError(f"{where}: a frequency cell needs a threshold")
    rule = cell.get("rule")
    if masker == "frequency" and rule not in RULES:
        raise ProfileError(f"{where}: rule must be one of {', '.join(RULES)}, got {rule!r}")
    if masker != "frequency" and rule is not None:
        raise ProfileError(f"{where}: rule is the frequency masker's; a {masker} cell has none (null)")


def expand_grid(
    grid: Mapping, threshold: float, where: str = "grid", rule: str = DEFAULT_RULE
) -> dict[str, dict]:
    """The named cells of a grid spec (see ``GRID_KEYS``), in a stable order, duplicates merged.

    ``maskers x text_tokens x seeds`` at ``image_mask``; ``baselines`` ``clip`` (truncate,
    ``full_text_tokens``, no image masking) and ``flip`` (the same text, ``image_mask``); a
    frequency-threshold sweep ``thresholds`` at ``sweep_text_tokens``; ``extra`` explicit cells
    (``{masker, text_tokens, image_mask[, threshold, rule, seed]}``, any seed-less cell is repeated over
    ``seeds``). Frequency cells get ``threshold`` and ``rule`` (the profile's ``freq:``) unless they say.
    The whole grid is repeated over ``worlds`` (each cell's ``world``, its name's first part; an extra
    cell with a ``world`` only there); no worlds: cells without one (runs outside a study plan).
    """
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(GRID_KEYS)})")
    g = {**GRID_KEYS, **grid}
    for key in ("worlds", "maskers", "text_tokens", "seeds", "baselines", "thresholds", "extra"):
        if not isinstance(g[key], list):
            raise ProfileError(f"{where}.{key}: expected a list, got {g[key]!r}")
    bad = [b for b in g["baselines"] if b not in BASELINES]
    if bad:
        raise ProfileError(f"{where}.baselines: unknown baseline {bad[0]!r} (known: {', '.join(BASELINES)})")
    for t in g["thresholds"]:
        if not isinstance(t, int | float) or not t > 0:
            raise ProfileError(f"{where}.thresholds: threshold must be a positive number, got {t!r}")

    specs: list[tuple[str, int, float, float | None]] = []
    for masker in g["maskers"]:
        for k in g["text_tokens"]:
            specs.append((masker, k, g["image_mask"], threshold))
    for baseline in g["baselines"]:
        specs.append(
            ("truncate", g["full_text_tokens"], 0.0 if baseline == "clip" else g["image_mask"], None)
        )
    for t in g["thresholds"]:
        specs.append(("frequency", g["sweep_text_tokens"], g["image_mask"], t))
    extra_cells = []
    for i, ex in enumerate(g["extra"]):
        if not isinstance(ex, Mapping) or not {"masker", "text_tokens"} <= set(ex):
            raise ProfileError(
                f"{where}.extra[{i}]: expected {{masker, text_tokens[, image_mask, seed, threshold, rule]}}"
            )
        extra_cells.append(ex)

    worlds = [check_world_name(f"{where}.worlds", w) for w in g["worlds"]] or [None]
    for i, ex in enumerate(extra_cells):
        if "world" in ex and ex["world"] not in worlds:
            raise ProfileError(
                f"{where}.extra[{i}]: world {ex['world']!r} is not in the grid's worlds "
                f"({', '.join(w for w in worlds if w) or 'none'})"
            )
    cells: dict[str, dict] = {}

    def add(cell: dict, origin: str) -> None:
        _check_cell(origin, cell)
        cells.setdefault(cell_name(**cell), cell)

    for world in worlds:
        for seed in g["seeds"]:
            for masker, k, r, t in specs:
                cell = make_cell(masker, k, r, seed, t, rule, world)
                add(cell, f"{where} cell ({world}, {masker}, K={k}, mask={r}, seed={seed})")
            for i, ex in enumerate(extra_cells):
                if ex.get("seed", seed) != seed or ex.get("world", world) != world:
                    continue
                cell = make_cell(
                    ex["masker"],
                    ex["text_tokens"],
                    ex.get("image_mask", g["image_mask"]),
                    seed,
                    ex.get("threshold", threshold),
                    ex.get("rule", rule),
                    world,
                )
                add(cell, f"{where}.extra[{i}]")
    if not cells:
        raise ProfileError(f"{where}: the grid has no cells")
    return cells


def uta_cell_name(seed: int) -> str:
    """``uta-s0``: the run of the UTA student of one seed."""
    return f"uta-s{int(seed)}"


def baseline_cell(grid: Mapping, seed: int, world: str | None = None) -> str:
    """The unmasked CLIP baseline cell of a seed in a world (``shapes-truncate-k32-m0-s0``)."""
    full = {**GRID_KEYS, **grid}["full_text_tokens"]
    return cell_name("truncate", full, 0.0, seed, world=world)


def expand_uta(
    spec: Mapping, cells: Mapping, grid: Mapping, pretrain: Mapping, where: str = "uta"
) -> tuple[dict, dict, dict]:
    """The live ``uta`` section and the UTA students of a ``uta:`` spec (see ``UTA_KEYS``).

    One student per seed of ``seeds``, named ``uta-s<seed>``: taught by ``teacher`` (``clip``: the seed's
    unmasked CLIP baseline cell; or a cell name, ``{seed}`` replaced), compute-matched to (and reported
    beside) the seed's CLIP baseline cell, both of which must be cells of the grid. ``model`` (the
    student's architecture) defaults to ``pretrain.model``. Returns ``(section, uta_cells, uta_finetunes)``,
    the last empty when ``finetune`` is off.
    """
    if not isinstance(spec, Mapping):
        raise ProfileError(f"{where}: expected a mapping, got {spec!r}")
    unknown = sorted(set(spec) - set(UTA_KEYS))
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(UTA_KEYS)})")
    u = {**copy.deepcopy(UTA_KEYS), **copy.deepcopy(dict(spec))}
    if u["model"] is None:
        u["model"] = pretrain.get("model")
    seeds = u["seeds"]
    if not isinstance(seeds, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds):
        raise ProfileError(f"{where}.seeds: expected a list of integers, got {seeds!r}")
    r = u["mask_ratio"]
    if isinstance(r, bool) or not isinstance(r, int | float) or not 0.0 < float(r) < 1.0:
        raise ProfileError(f"{where}.mask_ratio: the share of patches hidden, in (0, 1), got {r!r}")
    if u["masker"] not in UTA_MASKERS:
        raise ProfileError(
            f"{where}.masker: unknown patch masker {u['masker']!r} (known: {', '.join(UTA_MASKERS)})"
        )
    e = u["epochs"]
    if e != "matched" and (isinstance(e, bool) or not isinstance(e, int) or e < 1):
        raise ProfileError(f"{where}.epochs: 'matched' or a positive integer, got {e!r}")
    if not isinstance(u["finetune"], bool):
        raise ProfileError(f"{where}.finetune: true or false, got {u['finetune']!r}")
    if not isinstance(u["options"], Mapping):
        raise ProfileError(f"{where}.options: a mapping of open_clip_train options, got {u['options']!r}")
    for key in ("map_grid", "map_samples"):
        if isinstance(u[key], bool) or not isinstance(u[key], int) or u[key] < 1:
            raise ProfileError(f"{where}.{key}: a positive integer, got {u[key]!r}")
    teacher = u["teacher"]
    if not isinstance(teacher, str) or not teacher:
        raise ProfileError(f"{where}.teacher: 'clip' or a cell name (with {{seed}}), got {teacher!r}")
    worlds = list({**GRID_KEYS, **grid}["worlds"])
    world = u["world"] if u["world"] is not None else (worlds[0] if worlds else None)
    if world is not None and world not in worlds:
        raise ProfileError(
            f"{where}.world: {world!r} is not a world of the grid ({', '.join(worlds) or 'none'})"
        )
    u["world"] = world
    students: dict[str, dict] = {}
    for seed in seeds:
        baseline = baseline_cell(grid, seed, world)
        name = baseline if teacher in UTA_TEACHERS else teacher.replace("{seed}", str(seed))
        for role, cell in (("teacher", name), ("CLIP baseline", baseline)):
            if cell not in cells:
                raise ProfileError(
                    f"{where}: the {role} of seed {seed}, cell {cell!r}, is not in the grid (UTA needs the "
                    "seed's unmasked CLIP baseline: grid baselines [clip] with that seed)"
                )
        students[uta_cell_name(seed)] = {
            **({"world": world} if world else {}),
            "seed": int(seed),
            "teacher": name,
            "baseline": baseline,
        }
    finetunes = copy.deepcopy(students) if u["finetune"] else {}
    return u, students, finetunes


def profile_names(params: Mapping) -> list[str]:
    return list((params.get("profiles") or {}).keys())


def resolve(params: Mapping, name: str | None = None) -> dict:
    """The live configuration of profile ``name`` (default: ``params['profile']``)."""
    name = name or params.get("profile")
    profiles = params.get("profiles") or {}
    if name not in profiles:
        known = ", ".join(profiles) or "none defined"
        raise ProfileError(f"unknown profile {name!r} (params.yaml profiles: {known})")
    merged = deep_merge(params.get("defaults") or {}, profiles[name] or {})
    unknown = sorted(set(merged) - set(SECTIONS) - {"grid", "uta", "description"})
    if unknown:
        raise ProfileError(
            f"profile {name!r}: unknown section(s) {', '.join(unknown)} (known: {', '.join(SECTIONS)}, grid, uta)"
        )
    data = merged.get("data") or {}
    if data.get("source", "embedded") not in DATA_SOURCES:
        raise ProfileError(
            f"profile {name!r}: data.source must be one of {DATA_SOURCES}, got {data.get('source')!r}"
        )
    if data.get("source") == "shards" and not data.get("train_data"):
        raise ProfileError(f"profile {name!r}: data.source is 'shards' but data.train_data is not set")
    threshold = (merged.get("freq") or {}).get("threshold")
    if not isinstance(threshold, int | float) or not threshold > 0:
        raise ProfileError(f"profile {name!r}: freq.threshold must be a positive number, got {threshold!r}")
    rule = (merged.get("freq") or {}).get("rule", DEFAULT_RULE)
    if rule not in RULES:
        raise ProfileError(f"profile {name!r}: freq.rule must be one of {', '.join(RULES)}, got {rule!r}")
    check_protocols(f"profile {name!r}: eval.protocols", (merged.get("eval") or {}).get("protocols"))
    live = {key: merged.get(key) or {} for key in SECTIONS}
    live["cells"] = expand_grid(
        merged.get("grid") or {}, threshold, where=f"profile {name!r} grid", rule=rule
    )
    live["worlds"] = expand_worlds(merged, where=f"profile {name!r}")
    live["uta"], live["uta_cells"], live["uta_finetunes"] = expand_uta(
        merged.get("uta") or {},
        live["cells"],
        merged.get("grid") or {},
        live["pretrain"],
        where=f"profile {name!r} uta",
    )
    live["plan"] = {"profile": name, "fingerprint": fingerprint(live)}
    return {key: live[key] for key in LIVE_KEYS}


def expand_worlds(merged: Mapping, where: str = "profile") -> dict[str, dict]:
    """The live ``worlds`` section: per world of ``grid.worlds``, its ``preset`` (embedded data: the world
    preset of that name, ``clipf data synth --preset``; shards: null) and the ``dataset`` of its main
    table (``report.dataset``: one name, or a mapping world -> name). Its data are ``WORLD_DIR`` and
    ``WORLD_TABLE``."""
    worlds = (merged.get("grid") or {}).get("worlds") or []
    embedded = (merged.get("data") or {}).get("source", "embedded") == "embedded"
    datasets = (merged.get("report") or {}).get("dataset")
    out = {}
    for w in worlds:
        if embedded:
            from clipf.world.presets import PRESETS

            if w not in PRESETS:
                raise ProfileError(
                    f"{where}: grid.worlds: {w!r} is not a world preset (known: {', '.join(PRESETS)})"
                )
        dataset = datasets.get(w) if isinstance(datasets, Mapping) else datasets
        if not isinstance(dataset, str) or not dataset:
            raise ProfileError(f"{where}: report.dataset: no main-table dataset for world {w!r}")
        out[w] = {"preset": w if embedded else None, "dataset": dataset}
    return out


def world_paths(world: str) -> tuple[str, str]:
    """A world's data folder and frequency table (``WORLD_DIR``, ``WORLD_TABLE``)."""
    return WORLD_DIR.format(world=world), WORLD_TABLE.format(world=world)


def check_protocols(where: str, protocols: object) -> None:
    """``eval.protocols``: absent (``clipf eval``'s default, full), or a non-empty list of protocol names."""
    from clipf.evaluate.protocols import PROTOCOLS

    if protocols is None:
        return
    if not isinstance(protocols, list) or not protocols or any(p not in PROTOCOLS for p in protocols):
        raise ProfileError(
            f"{where}: a list of zero-shot protocols ({', '.join(PROTOCOLS)}), got {protocols!r}"
        )


def fingerprint(live: Mapping) -> str:
    body = {k: v for k, v in live.items() if k != "plan"}
    return hashlib.sha1(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:12]


LIVE_MARKER = "# ---- live configuration"
LIVE_HEADER = (
    f"{LIVE_MARKER}: written by `clipf study plan` from profiles.<profile>; dvc.yaml reads only these.\n"
    "# Edit the profile, not below (one-off overrides such as `dvc exp run -S pretrain.epochs=5` are fine).\n"
)


def plan(path: str | Path = "params.yaml", profile: str | None = None) -> dict:
    """Select ``profile`` (default: the current one) and write its live sections into ``path``.

    Everything above the live marker (comments, ``world:``, ``defaults:``, ``profiles:``) is kept
    byte for byte except the ``profile:`` line; the live sections below it are rewritten.
    """
    path = Path(path)
    live = resolve(load(path), profile)
    head = path.read_text().split(LIVE_MARKER)[0].rstrip("\n")
    head, n = re.subn(r"^profile:[^#\n]*", f"profile: {live['plan']['profile']} ", head, count=1, flags=re.M)
    if not n:
        head = f"profile: {live['plan']['profile']}\n{head}"
    head = re.sub(r"^profile: (\S+) $", r"profile: \1", head, flags=re.M)
    for key in LIVE_KEYS:
        if re.search(rf"^{key}:", head, flags=re.M):
            raise ProfileError(
                f"{path}: top-level {key!r} above the live marker; it belongs to the live sections"
            )
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(f"{head}\n\n{LIVE_HEADER}{dump_live(live)}")
    tmp.replace(path)
    return live


def dump_live(live: Mapping) -> str:
    """The live sections as YAML: stage sections in block style, one flow-style line per cell (grid cells,
    then UTA students)."""
    listed = ("cells", *UTA_CELL_KEYS)
    body = {k: v for k, v in live.items() if k not in listed}
    text = yaml.safe_dump(body, sort_keys=False, default_flow_style=False, width=4096)
    for key in listed:
        if key not in live:
            continue
        if not live[key]:
            text += f"{key}: {{}}\n"
            continue
        text += f"{key}:\n" + "".join(
            f"  {name}: {yaml.safe_dump(dict(cell), default_flow_style=True, sort_keys=False, width=4096).strip()}\n"
            for name, cell in live[key].items()
        )
    return text


def check(params: Mapping) -> dict:
    """Raise :class:`ProfileError` unless the live sections are a current plan of ``profile``."""
    name = params.get("profile")
    planned = params.get("plan") or {}
    fix = f"run `clipf study plan --profile {name}` (or `clipf study --profile {name}`)"
    if not planned:
        raise ProfileError(f"params.yaml has no live plan; {fix}")
    if planned.get("profile") != name:
        raise ProfileError(
            f"params.yaml: profile is {name!r} but the live sections were planned for {planned.get('profile')!r}; {fix}"
        )
    if planned.get("fingerprint") != resolve(params, name)["plan"]["fingerprint"]:
        raise ProfileError(f"params.yaml: profiles.{name} (or defaults) changed since it was planned; {fix}")
    cells = params.get("cells") or {}
    if not cells:
        raise ProfileError(f"params.yaml: no cells; {fix}")
    for key, cell in cells.items():
        _check_cell(f"cells.{key}", cell)
        if key != cell_name(**cell):
            raise ProfileError(f"cells.{key}: its values name a different cell ({cell_name(**cell)}); {fix}")
    for group in UTA_CELL_KEYS:
        for key, item in (params.get(group) or {}).items():
            if not isinstance(item, Mapping) or key != uta_cell_name(item.get("seed", -1)):
                raise ProfileError(f"{group}.{key}: not a UTA student of the plan; {fix}")
            for role in ("teacher", "baseline"):
                if item.get(role) not in cells:
                    raise ProfileError(f"{group}.{key}: its {role} {item.get(role)!r} is not a cell; {fix}")
    return planned
