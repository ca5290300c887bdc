"""The concept names of the ``concepts`` world: real English nouns from the rare frequency bands.

``clipf/world/data/concepts.tsv`` holds them (name, English frequency, BPE tokens, category), most
frequent in English first; that order is the world's concept rank (rank 1: the most frequent concept of
the world's Zipf prior), so, as on the web, a name common in English is also common in the world.

How the list was chosen (:func:`build_names_file`, run once by a maintainer; the file is committed so
generation needs neither wordfreq nor open_clip's vocabulary at run time):

1. ``data/concept_candidates.txt``: ~700 concrete, picturable common nouns written by hand in
   ImageNet-1k's kinds of classes (animals, plants, food, tools, vessels, instruments, furniture,
   vehicles, garments, objects, buildings).
2. Kept: one lower-case ASCII word; not in :data:`EXCLUDED` (words whose English frequency is mostly
   another sense or a name: "bear" the verb, "lotus" the car, "candy" the name ...), not a word the
   world's captions use for anything else (colour, size, pattern, background, boilerplate:
   :func:`clipf.world.alttext.caption_vocabulary`); English frequency (wordfreq, ``en``) within
   [``LOW``, ``HIGH``] = [1e-7, 6e-5] -- ImageNet-1k's class head nouns have a median of 3.4e-6
   (10-90 %: 1.5e-7 to 6e-5).
3. Spread evenly over log frequency: the band is cut into ``BINS`` equal log-width bins and each bin
   gives the same number of names (a bin with too few candidates gives all it has, the others share
   the rest), picked evenly by frequency within the bin -- no random choice.
"""

from __future__ import annotations

import csv
import math
from functools import cache
from pathlib import Path

DATA = Path(__file__).parent / "data"
NAMES_FILE = DATA / "concepts.tsv"
CANDIDATES_FILE = DATA / "concept_candidates.txt"
LOW, HIGH = 1e-7, 6e-5  # English frequency band of the names (wordfreq)
BINS = 16
COUNT = 256
IMAGENET_MEDIAN = 3.4e-6  # median English frequency of ImageNet-1k's class head nouns (paper/README.md)
ENGLISH_TOKEN = 1e-3  # English frequency of the median running-text token (wordfreq)

# Candidates left out: their English frequency counts mostly another sense (a verb, a brand, a person,
# a sport), or they name a colour.
EXCLUDED = frozenset(
    "bear lotus tart sander spade pitcher racket clog quiver rattle scroll bellows buckle bubble candy "
    "cougar wolverine banner calliope gnu clementine croquet orchid cleaver mule totem pennant".split()
)


@cache
def concept_names() -> tuple[tuple[str, float, int, str], ...]:
    """(name, English frequency, BPE tokens, category) of every bundled name, most frequent first."""
    rows = []
    with open(NAMES_FILE, encoding="utf-8", newline="") as f:
        for row in csv.reader((line for line in f if not line.startswith("#")), delimiter="\t"):
            name, freq, tokens, category = row
            rows.append((name, float(freq), int(tokens), category))
    return tuple(rows)


def pick_names(count: int) -> list[str]:
    """``count`` names spread evenly over the bundled list's ranks (all of them at its full length)."""
    names = [r[0] for r in concept_names()]
    if not 1 <= count <= len(names):
        raise ValueError(f"count must be in [1, {len(names)}], got {count}")
    return [names[(i * len(names)) // count] for i in range(count)]


def candidates() -> list[tuple[str, str]]:
    """(word, category) of the hand-written candidate list, in file order."""
    out = []
    for line in CANDIDATES_FILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or ":" not in line:
            continue
        category, words = line.split(":", 1)
        out += [(w, category.strip()) for w in words.split()]
    return out


def stratified(rows: list[tuple[float, str]], count: int, bins: int, low: float, high: float) -> list:
    """``count`` of ``(frequency, word)`` rows spread evenly over ``bins`` log-frequency bins of
    [low, high]: equal quotas, a short bin's shortfall shared by the others; evenly spaced by frequency
    within a bin. Deterministic."""
    lo, hi = math.log10(low), math.log10(high)
    groups: list[list] = [[] for _ in range(bins)]
    for f, w in sorted(rows):
        b = min(bins - 1, int((math.log10(f) - lo) / (hi - lo) * bins))
        groups[b].append((f, w))
    if sum(map(len, groups)) < count:
        raise ValueError(f"only {sum(map(len, groups))} candidates in the band, {count} wanted")
    quota = [0] * bins
    left, open_bins = count, list(range(bins))
    while left:
        share = max(1, left // len(open_bins))
        for b in list(open_bins):
            take = min(share, len(groups[b]) - quota[b], left)
            quota[b] += take
            left -= take
            if quota[b] == len(groups[b]):
                open_bins.remove(b)
            if not left:
                break
    out = []
    for b, group in enumerate(groups):
        n, k = len(group), quota[b]
        out += [group[int((i + 0.5) * n / k)] for i in range(k)] if k else []
    return out


def build_names_file(count: int = COUNT, path: Path = NAMES_FILE) -> int:
    """Choose the names (see the module docstring) and write ``path``; returns how many."""
    from importlib.metadata import version

    import wordfreq
    from open_clip.tokenizer import SimpleTokenizer

    from clipf.world.alttext import caption_vocabulary

    used = caption_vocabulary()
    category = {}
    rows = []
    for word, cat in candidates():
        if word in category:
            raise ValueError(f"{CANDIDATES_FILE}: {word!r} listed twice")
        category[word] = cat
        if not (word.isascii() and word.isalpha() and word.islower()) or word in EXCLUDED or word in used:
            continue
        f = wordfreq.word_frequency(word, "en")
        if LOW <= f <= HIGH:
            rows.append((f, word))
    chosen = sorted(stratified(rows, count, BINS, LOW, HIGH), reverse=True)
    tok = SimpleTokenizer()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(
            f"# name\tenglish_frequency\tbpe_tokens\tcategory  (wordfreq {version('wordfreq')}; "
            f"{len(rows)} candidates in [{LOW:g}, {HIGH:g}], {count} chosen over {BINS} log bins)\n"
        )
        for freq, word in chosen:
            f.write(f"{word}\t{freq:.3g}\t{len(tok.encode(word))}\t{category[word]}\n")
    concept_names.cache_clear()
    return len(chosen)


if __name__ == "__main__":
    print(f"{build_names_file()} names -> {NAMES_FILE}")
