"""Training objectives, registered by name: what ``clipf train --objective NAME`` trains.

:data:`OBJECTIVES` maps a name to where its :class:`clipf.engine.Objective` lives
(``"module:attribute"``); :func:`get` imports it on first use. The registry imports no objective (and
nothing of the engine), so the engine can look objectives up without an import cycle. A new objective
is one module defining an :class:`~clipf.engine.Objective` plus one line here (or :func:`register`)::

    OBJECTIVES["mine"] = "clipf.objectives.mine:MINE"
"""

from __future__ import annotations

import importlib
from typing import Any

OBJECTIVES: dict[str, str] = {
    "clip": "clipf.objectives.clip:CLIP",  # contrastive CLIP / FLIP (open_clip's ClipLoss)
    "siglip": "clipf.objectives.clip:SIGLIP",  # open_clip_train's --siglip
    "uta": "clipf.objectives.uta:UTA",  # unmasked token alignment to a frozen CLIP teacher
}


def register(name: str, target: str) -> None:
    """Add (or replace) objective ``name``: ``target`` is ``"package.module:ATTRIBUTE"``."""
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"objective target {target!r} is not 'module:attribute'")
    OBJECTIVES[name] = target


def get(name: str) -> Any:
    """The objective registered as ``name`` (its module is imported on first use)."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}")
    module, _, attr = OBJECTIVES[name].partition(":")
    return getattr(importlib.import_module(module), attr)
