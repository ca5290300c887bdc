"""The masker explorer behind ``notebooks/00_explore.ipynb``: what each text masker keeps of a caption.

For one caption, a budget K and a frequency threshold t, every masker of :data:`clipf.masking.MASKERS`
is run once (the kept words, each coloured by its P(w), and the BPE tokens the K-token tower sees) and
``draws`` times more (how often each word survives); a class prompt such as ``"a photo of a {c}."``
is shown as the evaluation protocol encodes it (``full``: unmasked at the export's 32 tokens;
``masked``: through the same masker at K). :func:`explorer` wires these to ipywidgets; the functions
also return plain HTML / DataFrames / figures, so the notebook runs headless under papermill.

P(w) follows ``rule``: ``authors`` is the released code's P = 1 − √(t/f(w)), unclamped (negative for
words rarer than t, which then rank above every clamped word), ``clamped`` is max(0, 1 − √(t/f(w))).
Words missing from the table get the masker's ``missing`` value (1 for ``"mask"``, the default).
"""

from __future__ import annotations

import html
import inspect
import math
import os
import tempfile
from collections import defaultdict, deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipf import freq, masking, text
from clipf.freq import FreqTable
from clipf.world import contact_sheet, is_world, synthesize

RULES = getattr(
    freq, "RULES", ("authors", "clamped")
)  # authors: 1 - sqrt(t/f) as released; clamped: max(0, .)
PROTOCOLS = ("full", "masked")  # how class prompts are encoded at evaluation
FULL_CONTEXT = 32  # exports and zero-shot prompts are always at open_clip's 32 tokens
DEFAULT_PROMPT = "a photo of a {c}."
EXPLORE_WORLD = "data/explore"  # where a small world is made when no study world (data/<world>) is there
# the study's worlds (data/world: the single world before issue 18)
STUDY_WORLDS = ("data/shapes", "data/concepts", "data/world")


# --------------------------------------------------------------------------- inputs
def ensure_world(
    world: str | os.PathLike | None = None,
    root: str | os.PathLike = ".",
    n_train: int = 512,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """A world to explore: ``world`` if given; else a study world (``STUDY_WORLDS``); else a small one made
    once in ``data/explore`` (``n_train`` pairs, no val / eval sets; the knobs of ``params.yaml``)."""
    root = Path(root)
    if world is not None:
        path = Path(world)
        if not is_world(path):
            raise FileNotFoundError(f"{path}: not a clipf world (make one with `clipf data synth --out DIR`)")
        return path
    for path in (*(root / w for w in STUDY_WORLDS), root / EXPLORE_WORLD):
        if is_world(path):
            return path
    path = root / EXPLORE_WORLD
    params = root / "params.yaml"
    synthesize(
        path, n_train, 0, image_size, seed, params if params.exists() else None, n_eval=0, progress=False
    )
    return path


def world_captions(world: str | os.PathLike, n: int | None = 200, split: str = "train") -> list[str]:
    """The first ``n`` captions of a world's split (None: all)."""
    from clipf.world.stats import read_pairs

    return [caption for caption, _ in read_pairs(Path(world) / split, n)]


def read_captions(path: str | os.PathLike) -> list[str]:
    """A caption file, one caption a line (blank lines dropped)."""
    lines = [line.strip() for line in masking.read_lines(path, "clipf explore")]
    captions = [line for line in lines if line]
    if not captions:
        raise ValueError(f"{path}: no captions")
    return captions


def table_for(world: str | os.PathLike, table: str | os.PathLike | FreqTable | None = None) -> FreqTable:
    """``table`` (a FreqTable or a path), or counts of the world's training captions (min count 1, no
    cleaning: what the study's ``freq`` stage builds for the embedded world)."""
    if isinstance(table, FreqTable):
        return table
    if table is not None:
        return freq.load_table(table)
    return freq.build_table([Path(world) / "train"], min_count=1, progress=False)


def world_sheet(world: str | os.PathLike, n: int = 8, cols: int = 4, split: str = "train"):
    """The world's first ``n`` images with their captions (:func:`clipf.world.contact_sheet`), as a
    PIL image (drawn in a temporary folder: nothing is written into the world)."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="clipf-sheet-") as tmp:
        path = contact_sheet(world, Path(tmp) / "sheet.png", n=n, cols=cols, split=split, cell=240)
        image = Image.open(path)
        image.load()
    return image


# --------------------------------------------------------------------------- P(w)
def p_values(table: FreqTable, threshold: float | None = None, rule: str = "authors") -> dict[str, float]:
    """``{word: P(w)}`` at threshold t under ``rule`` (``clipf.freq``'s own rule when it has one)."""
    if rule not in RULES:
        raise ValueError(f"rule={rule!r} is not one of {', '.join(map(repr, RULES))}")
    if "rule" in inspect.signature(table.p_mask).parameters:
        return table.p_mask(threshold, rule=rule)
    if rule == "clamped" or table.published:  # this clipf.freq clamps; a published file holds P itself
        return table.p_mask(threshold)
    scale = (freq.DEFAULT_THRESHOLD if threshold is None else float(threshold)) * table.total
    return {w: 1.0 - math.sqrt(scale / c) for w, c in table.counts.items()}


def masker_opts(
    name: str, table: FreqTable, threshold: float | None, rule: str, missing: str = "mask"
) -> dict[str, Any]:
    """The options ``name`` takes, of table / threshold / rule / missing (``rule`` only where the
    masker has it)."""
    offered = {"table": table, "threshold": threshold, "rule": rule, "missing": missing}
    return {k: v for k, v in offered.items() if k in masking.masker_options(name)}


def supports_rule() -> bool:
    """Does this clipf's frequency masker take ``rule``? (If not, it masks with its built-in rule.)"""
    return "rule" in masking.masker_options("frequency")


# --------------------------------------------------------------------------- masking one caption
@dataclass
class Masked:
    """One caption through one masker: its words, each word's BPE ids, how many of each word's tokens
    were kept, and the row of kept ids in the order the tower reads them."""

    masker: str
    words: list[str]
    ids: list[tuple[int, ...]]
    kept: list[int]
    row: list[int]

    @property
    def text(self) -> str:
        """The kept text as the tower reads it."""
        return text.decode(self.row)

    def whole(self) -> list[bool]:
        """Per word: were all its tokens kept?"""
        return [k == len(i) for k, i in zip(self.kept, self.ids, strict=True)]


def align(ids: Sequence[Sequence[int]], row: Sequence[int]) -> list[int]:
    """How many tokens of each word a masked row kept. The row is matched as a subsequence of the
    caption's tokens (every masker but ``shuffle`` keeps order), else as a multiset; a token shared
    by several words goes to the earliest one left (which copy was kept cannot be told from the ids)."""
    flat = [(w, t) for w, word in enumerate(ids) for t in word]
    kept = [0] * len(ids)
    j = 0
    for t in row:
        while j < len(flat) and flat[j][1] != t:
            j += 1
        if j == len(flat):
            break
        kept[flat[j][0]] += 1
        j += 1
    else:
        return kept
    where: dict[int, deque[int]] = defaultdict(deque)
    for w, t in flat:
        where[t].append(w)
    kept = [0] * len(ids)
    for t in row:
        if not where[t]:
            raise ValueError(f"token {t} of the masked row is not in the caption")
        kept[where[t].popleft()] += 1
    return kept


def _rows(tensor) -> list[list[int]]:
    return [[t for t in row if t not in (0, text.SOT, text.EOT)] for row in tensor.tolist()]


def mask_caption(caption: str, masker: str, k: int, seed: int = 0, **opts: Any) -> Masked:
    """``caption`` through ``masker`` at K (one draw from ``seed``)."""
    words, ids = text.encode_words(caption)
    row = _rows(masking.get_masker(masker)([caption], k, np.random.default_rng(seed), **opts))[0]
    return Masked(masker, words, ids, align(ids, row), row)


def survival(caption: str, masker: str, k: int, draws: int = 100, seed: int = 0, **opts: Any):
    """How often each word of ``caption`` survives (all its tokens kept) over ``draws`` masks: a
    DataFrame word, n (occurrences in the caption), tokens, survival — one row per distinct word in
    order of first appearance (a repeated word's rate is over all its copies: which copy a mask kept
    cannot be told from the ids)."""
    import pandas as pd

    words, ids = text.encode_words(caption)
    rows = _rows(masking.get_masker(masker)([caption] * draws, k, np.random.default_rng(seed), **opts))
    whole = np.zeros(len(words))
    for row in rows:
        whole += [n == len(i) for n, i in zip(align(ids, row), ids, strict=True)]
    df = pd.DataFrame({"word": words, "tokens": [len(i) for i in ids], "kept": whole})
    df = df.groupby("word", sort=False).agg(
        n=("kept", "size"), tokens=("tokens", "first"), kept=("kept", "sum")
    )
    df["survival"] = df.pop("kept") / (df["n"] * max(draws, 1))
    return df.reset_index()


def survival_table(
    caption: str,
    k: int,
    table: FreqTable,
    threshold: float | None = None,
    rule: str = "authors",
    maskers: Sequence[str] | None = None,
    draws: int = 100,
    seed: int = 0,
):
    """Survival of every distinct word (rows, in caption order) under every masker (columns), with P(w)."""
    import pandas as pd

    maskers = list(maskers or masking.MASKERS)
    words = list(dict.fromkeys(text.encode_words(caption)[0]))
    out = pd.DataFrame({"word": words, "P": word_p(words, p_values(table, threshold, rule))})
    for name in maskers:
        opts = masker_opts(name, table, threshold, rule)
        out[name] = survival(caption, name, k, draws, seed, **opts)["survival"].to_numpy()
    return out


def word_p(words: Sequence[str], probs: Mapping[str, float], missing: str = "mask") -> list[float]:
    """P(w) of each word; a word missing from the table gets the masker's ``missing`` value."""
    default = masking.MISSING[missing]
    return [probs.get(w, default) for w in words]


def prompt_under(
    template: str, classname: str, protocol: str, masker: str, k: int, seed: int = 0, **opts: Any
) -> Masked:
    """The class prompt as evaluation encodes it: ``full`` — unmasked, at the export's 32 tokens
    (every masker alike); ``masked`` — through ``masker`` at K, like a training caption."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r} is not one of {', '.join(map(repr, PROTOCOLS))}")
    prompt = template.replace("{c}", classname) if "{c}" in template else template.format(classname)
    if protocol == "full":
        return mask_caption(prompt, "truncate", FULL_CONTEXT, seed)
    return mask_caption(prompt, masker, k, seed, **opts)


def prompt_table(
    template: str,
    classname: str,
    k: int,
    table: FreqTable,
    threshold: float | None = None,
    rule: str = "authors",
    maskers: Sequence[str] | None = None,
    seed: int = 0,
):
    """What the class prompt becomes under each protocol (columns) for each masker (rows)."""
    import pandas as pd

    rows = {}
    for name in maskers or masking.MASKERS:
        opts = masker_opts(name, table, threshold, rule)
        rows[name] = {p: prompt_under(template, classname, p, name, k, seed, **opts).text for p in PROTOCOLS}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("masker")


# --------------------------------------------------------------------------- HTML
STYLE = """<style>
.clipf-x{font-family:var(--jp-content-font-family,sans-serif);font-size:13px;line-height:1.9}
.clipf-x h4{margin:10px 0 2px 0}
.clipf-x .w{padding:1px 3px;margin:0 1px;border-radius:3px;color:#111}
.clipf-x .w.drop{opacity:.35;text-decoration:line-through}
.clipf-x .w.part{outline:1px dashed #333}
.clipf-x .tok{font-family:monospace;font-size:11px;padding:0 3px;margin:1px;border:1px solid #bbb;border-radius:3px}
.clipf-x .tok.drop{opacity:.3;text-decoration:line-through}
.clipf-x .tok.sp{background:#eee;color:#666}
.clipf-x table{border-collapse:collapse;font-size:12px}
.clipf-x td,.clipf-x th{padding:1px 6px;text-align:left}
.clipf-x .bar{display:inline-block;height:10px;background:#4a7fc1;vertical-align:middle}
</style>"""


def colour(p: float) -> str:
    """Background colour of a word with P(w) = p: green (kept first, P <= 0) to red (masked first, P = 1)."""
    from matplotlib import colormaps

    r, g, b, _ = colormaps["RdYlGn_r"](min(max(p, 0.0), 1.0))
    return "#{:02x}{:02x}{:02x}".format(*(int(255 * (0.55 * c + 0.45)) for c in (r, g, b)))


def _piece(token_id: int) -> str:
    tok = text.bpe_tokenizer()
    piece = tok.decoder[token_id]
    raw = bytearray(tok.byte_decoder[c] for c in piece.replace("</w>", ""))
    return raw.decode("utf-8", "replace") + ("·" if not piece.endswith("</w>") else "")


def words_html(m: Masked, p: Sequence[float], known: Collection[str] = ()) -> str:
    """The caption's words coloured by P(w); dropped words struck through, partly kept ones outlined;
    the tooltip gives P and says which words are not in ``known`` (the table)."""
    spans = []
    for word, ids, n, pw in zip(m.words, m.ids, m.kept, p, strict=True):
        cls = "w" if n == len(ids) else ("w part" if n else "w drop")
        title = f"P = {pw:.3f}{'' if word in known else ' (not in the table)'}, {n}/{len(ids)} token(s) kept"
        spans.append(
            f'<span class="{cls}" style="background:{colour(pw)}" title="{title}">{html.escape(word)}</span>'
        )
    return " ".join(spans)


def tokens_html(m: Masked) -> str:
    """The BPE tokens the tower reads (start, kept ids, end), then the caption's dropped ones."""
    seen = ['<span class="tok sp">&lt;start&gt;</span>']
    seen += [f'<span class="tok">{html.escape(_piece(t))}</span>' for t in m.row]
    seen.append('<span class="tok sp">&lt;end&gt;</span>')
    kept = list(m.kept)
    dropped = []
    for w, ids in enumerate(m.ids):
        for i, t in enumerate(ids):
            if i >= kept[w]:
                dropped.append(f'<span class="tok drop">{html.escape(_piece(t))}</span>')
    more = f" &nbsp; dropped: {''.join(dropped)}" if dropped else ""
    return "".join(seen) + more


def survival_html(df) -> str:
    """The survival table as HTML: a bar and a percentage per word and masker."""
    maskers = [c for c in df.columns if c not in ("word", "P")]
    head = "<tr><th>word</th><th>P(w)</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in maskers)
    rows = [head + "</tr>"]
    for _, r in df.iterrows():
        cells = "".join(
            f'<td><span class="bar" style="width:{40 * r[m]:.0f}px"></span> {100 * r[m]:.0f}%</td>'
            for m in maskers
        )
        word = f'<span class="w" style="background:{colour(r["P"])}">{html.escape(r["word"])}</span>'
        rows.append(f"<tr><td>{word}</td><td>{r['P']:.2f}</td>{cells}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def render(
    caption: str,
    k: int,
    table: FreqTable,
    threshold: float | None = None,
    rule: str = "authors",
    protocol: str = "full",
    maskers: Sequence[str] | None = None,
    prompt: str = DEFAULT_PROMPT,
    classname: str = "red circle",
    draws: int = 100,
    seed: int = 0,
) -> str:
    """The whole explorer view of one setting, as HTML: per masker the kept words (coloured by P) and
    tokens, the class prompt under ``protocol``, and the survival table over ``draws`` masks."""
    k = masking.check_k(k)
    maskers = list(maskers or masking.MASKERS)
    probs = p_values(table, threshold, rule)
    t = freq.DEFAULT_THRESHOLD if threshold is None else threshold
    n_tokens = sum(len(i) for i in text.encode_words(caption)[1])
    note = (
        ""
        if supports_rule()
        else " (this frequency masker has no <code>rule</code> option: it masks with its own)"
    )
    parts = [
        STYLE,
        '<div class="clipf-x">',
        f"<div><b>{n_tokens}</b> BPE tokens; K = {k} keeps <b>{k - 2}</b> (start and end tokens count). "
        f"t = {t:g}, rule <b>{rule}</b>{note}. Colour: P(w) from green (0 or below: kept first) "
        "to red (1: masked first); hover a word for P.</div>",
    ]
    for name in maskers:
        opts = masker_opts(name, table, threshold, rule)
        m = mask_caption(caption, name, k, seed, **opts)
        p = word_p(m.words, probs)
        pm = prompt_under(prompt, classname, protocol, name, k, seed, **opts)
        parts += [
            f"<h4>{html.escape(name)}</h4>",
            f"<div>{words_html(m, p, probs)}</div>",
            f"<div>{tokens_html(m)}</div>",
            f"<div>prompt ({protocol}): {words_html(pm, word_p(pm.words, probs), probs)} &rarr; "
            f"<code>{html.escape(pm.text)}</code></div>",
        ]
    df = survival_table(caption, k, table, threshold, rule, maskers, draws, seed)
    parts += [f"<h4>Survival over {draws} draws</h4>", survival_html(df), "</div>"]
    return "".join(parts)


def survival_figure(df, title: str = ""):
    """Grouped bars: survival of each word (x, in caption order) under each masker."""
    import matplotlib.pyplot as plt

    maskers = [c for c in df.columns if c not in ("word", "P")]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(df)), 3))
    width = 0.8 / max(len(maskers), 1)
    x = np.arange(len(df))
    for i, name in enumerate(maskers):
        ax.bar(x + i * width - 0.4 + width / 2, df[name], width, label=name)
    ax.set_xticks(x, df["word"], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("survival")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncols=len(maskers), loc="upper center", bbox_to_anchor=(0.5, 1.28), frameon=False)
    fig.tight_layout()
    plt.close(fig)
    return fig


# --------------------------------------------------------------------------- widgets
def explorer(
    captions: Sequence[str],
    table: FreqTable,
    caption: str | None = None,
    k: int = 8,
    threshold: float | None = None,
    rule: str = "authors",
    protocol: str = "full",
    maskers: Sequence[str] | None = None,
    prompt: str = DEFAULT_PROMPT,
    classname: str = "red circle",
    draws: int = 100,
    seed: int = 0,
):
    """The interactive explorer (ipywidgets): a caption box, a sample slider over ``captions`` or a
    caption file, K and t sliders, masker / rule / protocol choices; every change re-renders."""
    import ipywidgets as W

    pool = {"samples": list(captions)}
    t0 = freq.DEFAULT_THRESHOLD if threshold is None else float(threshold)
    wide = W.Layout(width="95%")
    box = W.Textarea(value=caption or pool["samples"][0], description="caption", layout=wide, rows=2)
    sample = W.IntSlider(0, 0, max(len(pool["samples"]) - 1, 0), description="sample")
    path = W.Text(placeholder="captions.txt (one a line)", description="file")
    load = W.Button(description="load file")
    ks = W.IntSlider(k, 3, FULL_CONTEXT, description="K")
    ts = W.FloatLogSlider(t0, base=10, min=-6, max=0, step=0.25, description="t", readout_format=".1e")
    names = ["all", *masking.MASKERS]
    pick = W.Dropdown(
        options=names, value="all" if not maskers or len(maskers) > 1 else maskers[0], description="masker"
    )
    small = {"button_width": "80px", "description_width": "60px"}
    rules = W.ToggleButtons(options=list(RULES), value=rule, description="rule", style=small)
    protos = W.ToggleButtons(options=list(PROTOCOLS), value=protocol, description="protocol", style=small)
    prompt_box = W.Text(prompt, description="prompt")
    cls_box = W.Text(classname, description="class")
    out = W.HTML()

    def update(*_):
        chosen = list(maskers or masking.MASKERS) if pick.value == "all" else [pick.value]
        try:
            out.value = render(box.value, ks.value, table, ts.value, rules.value, protos.value, chosen,
                               prompt_box.value, cls_box.value, draws, seed)  # fmt: skip
        except (ValueError, KeyError) as err:
            out.value = f"<pre>{html.escape(str(err))}</pre>"

    def pick_sample(change):
        box.value = pool["samples"][change["new"]]

    def load_file(_):
        try:
            pool["samples"] = read_captions(path.value.strip())
        except (OSError, ValueError) as err:
            out.value = f"<pre>{html.escape(str(err))}</pre>"
            return
        sample.max, sample.value = len(pool["samples"]) - 1, 0
        box.value = pool["samples"][0]

    sample.observe(pick_sample, "value")
    load.on_click(load_file)
    for w in (box, ks, ts, pick, rules, protos, prompt_box, cls_box):
        w.observe(update, "value")
    update()
    controls = [box, W.HBox([sample, path, load]), W.HBox([ks, ts, pick]), W.HBox([rules, protos]),
                W.HBox([prompt_box, cls_box]), out]  # fmt: skip
    return W.VBox(controls)
