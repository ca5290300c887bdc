"""Small CPU architectures as open_clip JSON configs (``clipf/model_configs/*.json``).

Architectures are data, as in open_clip: :func:`register` adds this package's config folder to
open_clip's registry (``open_clip.add_model_config``), after which every open_clip door
(``create_model_and_transforms``, ``get_tokenizer``, ``--model`` of the trainer) knows the names.
Every clipf entrypoint calls it first; calling it again is a no-op.

=====================  ========  =====================================  ======================  ==========
name                   image     vision tower                           text tower (ctx 32)     parameters
=====================  ========  =====================================  ======================  ==========
``clipf-vit-tiny``     32 px     ViT, patch 4 (64 patches), 4 x 192     3 x 128                 ~8.8 M
``clipf-vit-tiny-64``  64 px     ViT, patch 8 (64 patches), 4 x 192     3 x 128                 ~8.8 M
``clipf-vit-micro``    32 px     ViT, patch 8 (16 patches), 2 x 64      2 x 64                  ~3.4 M
=====================  ========  =====================================  ======================  ==========

Most parameters of these towers are the 49,408-row BPE token embedding (open_clip's vocabulary, which
the maskers emit); the compute is in the transformers. ``clipf-vit-micro`` is for tests.
The full text context is 32 tokens, the paper's (CLIPA's) unmasked length; a K-token tower is the
same config created with open_clip's ``force_context_length=K``.
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_DIR = Path(__file__).with_name("model_configs")
_registered = False


def names() -> list[str]:
    """The architectures this package ships (file stems of ``model_configs/*.json``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def config(name: str) -> dict:
    """The JSON config of one of this package's architectures."""
    path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"no clipf model config {name!r}; clipf ships: {', '.join(names())}")
    return json.loads(path.read_text())


def register() -> list[str]:
    """Make clipf's architectures known to open_clip (idempotent); returns their names."""
    global _registered
    if not _registered:
        import open_clip

        if not set(names()) <= set(open_clip.list_models()):
            open_clip.add_model_config(CONFIG_DIR)
        _registered = True
    return names()
