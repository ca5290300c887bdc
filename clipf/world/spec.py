"""What a world preset declares about its evaluation sets (:class:`EvalSet`), and class-balanced labels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CLASSIFICATION, RETRIEVAL = "zeroshot_classification", "zeroshot_retrieval"


def balanced_labels(n: int, n_classes: int, seed: int, stream: int) -> list[int]:
    """``n`` labels, each class ``n // C`` or ``n // C + 1`` times (the first ``n % C`` classes get one
    more), in a shuffled order."""
    labels = np.arange(n) % n_classes
    return np.random.default_rng(np.random.SeedSequence([seed, stream, 1 << 20])).permutation(labels).tolist()


@dataclass(frozen=True)
class EvalSet:
    """One CLIP_benchmark ``wds/<name>`` set: its seed stream, task, class names and prompt templates
    (classification), the classes its images are drawn from (``drawn``: indices into ``classes``; None:
    all), extra ``info.json`` keys and extra JSON files written beside ``info.json``."""

    name: str
    stream: int
    task: str = CLASSIFICATION
    attribute: str | None = None
    classes: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()
    drawn: tuple[int, ...] | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, Any] = field(default_factory=dict)

    def labels(self, n: int, seed: int) -> list[int | None]:
        """The class of each of ``n`` images, balanced over ``drawn`` (None for a set without classes;
        a retrieval set with classes draws its images class-balanced too)."""
        if not self.classes:
            return [None] * n
        if self.drawn is None:
            return balanced_labels(n, len(self.classes), seed, self.stream)
        return [self.drawn[i] for i in balanced_labels(n, len(self.drawn), seed, self.stream)]
