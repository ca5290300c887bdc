"""Contrastive pre-training, the engine's own objective: open_clip's CLIP loss (FLIP with
``--force-patch-dropout``), or its SigLIP loss (``--objective siglip`` = open_clip_train's ``--siglip``).

Nothing is swapped beyond what every run gets (:class:`clipf.engine.Run`); ``clipf.json`` records the
objective as ``clip`` or ``siglip``.
"""

from __future__ import annotations

from typing import Any

from clipf.engine import Objective, Plan


class Contrastive(Objective):
    """open_clip_train's contrastive loss; ``oc_flags`` selects its variant."""

    def __init__(self, name: str, oc_flags: tuple[str, ...] = ()):
        self.name, self.oc_flags = name, oc_flags

    def plan(self, plan: Plan, options: Any) -> Plan:
        """Record which loss open_clip_train will build (``--siglip`` may also be given directly)."""
        return plan.replace(objective="siglip" if plan.oc.siglip else "clip")


CLIP = Contrastive("clip")
SIGLIP = Contrastive("siglip", ("--siglip",))
