"""The evaluation sets, in CLIP_benchmark's ``wds/<name>`` layout.

Zero-shot classification of the main object's shape, colour, colour+shape (compositional), size and
position, and caption retrieval (several clean descriptions per image). Labels are class-balanced (each
class ``n // C`` or ``n // C + 1`` times, shuffled); everything else in a scene is random, drawn from a
seed stream of its own (never the training or validation stream).

``DIR/eval/<name>/``: ``classnames.txt`` + ``zeroshot_classification_templates.txt`` (classification) or
``dataset_type.txt`` = ``retrieval``; ``test/{0..}.tar`` + ``test/nshards.txt``; ``info.json`` (task,
size, classes and their counts, templates, seed stream). Read with stock CLIP_benchmark::

    clip_benchmark eval --dataset wds/world_shape --dataset_root DIR/eval/world_shape ...
    clip_benchmark eval --dataset wds/world_retrieval --dataset_root DIR/eval/world_retrieval \\
        --task zeroshot_retrieval ...
"""

from __future__ import annotations

from collections.abc import Mapping

# name -> (attribute labelled, seed stream, templates); attribute None: retrieval
EVAL_SETS: dict[str, tuple[str | None, int, tuple[str, ...]]] = {
    "world_shape": (
        "shape",
        10,
        (
            "a photo of a {c}.",
            "a {c}.",
            "a picture of a {c} shape.",
            "an image of a {c}.",
            "a {c} on a background.",
            "stock photo of a {c}.",
            "a drawing of a {c}.",
        ),
    ),
    "world_color": (
        "color",
        11,
        (
            "a photo of a {c} object.",
            "a {c} shape.",
            "something {c}.",
            "a picture of a {c} thing.",
            "an image of a {c} object.",
            "the color {c}.",
        ),
    ),
    "world_objects": (
        "object",
        12,
        (
            "a photo of a {c}.",
            "a {c}.",
            "a picture of a {c}.",
            "an image of a {c}.",
            "a {c} on a background.",
            "stock photo of a {c}.",
        ),
    ),
    "world_size": (
        "size",
        13,
        ("a {c} shape.", "a photo of a {c} object.", "a {c} object.", "a picture of something {c}."),
    ),
    "world_position": (
        "position",
        14,
        (
            "a shape on the {c}.",
            "an object at the {c}.",
            "a photo of something on the {c}.",
            "a shape at the {c} of the image.",
        ),
    ),
    "world_retrieval": (None, 15, ()),
}


def classes(name: str, scene_cfg: Mapping) -> list[str]:
    """Class names of a classification set under the ``world.scene`` config ([] for retrieval)."""
    attribute = EVAL_SETS[name][0]
    if attribute is None:
        return []
    if attribute == "object":
        return [f"{c} {s}" for c in scene_cfg["colors"] for s in scene_cfg["shapes"]]
    return list(
        scene_cfg[{"shape": "shapes", "color": "colors", "size": "sizes", "position": "positions"}[attribute]]
    )


def force_of(name: str, label: str) -> dict:
    """The main-object attributes a class label fixes (``"red star"`` -> color red, shape star)."""
    attribute = EVAL_SETS[name][0]
    if attribute == "object":
        color, shape = label.split(" ", 1)
        return {"color": color, "shape": shape}
    return {attribute: label}
