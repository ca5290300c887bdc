"""Export a checkpoint as an open_clip ``local-dir:`` model, at the full text length.

A tower pre-trained on K-token captions (``--text-tokens K``) has a K-row text positional table: open_clip
creates it with ``force_context_length=K``, and a stock text tower only accepts batches of exactly its
context length. Evaluation text must never be cut to K tokens (a zero-shot prompt cut to 4 tokens loses
its class name), so every evaluation in clipf — the exports written here, the val / zero-shot evaluation
``clipf.train`` runs between epochs, and the unmasked fine-tune — runs the tower at the full context N
(32, the paper's unmasked length) with the K trained rows extended to N:

``repeat`` (default)
    keep the K trained rows and repeat the last one (row K−1) for positions K..N−1. Every position keeps
    its trained meaning, so a text of at most K tokens — the start token, a short prompt, the end token —
    encodes *exactly* as the K-token tower encodes it (attention is causal and features are read at the
    end token, so later positions never reach it); longer texts see the "last position" row again for the
    overflow, the row the K-token tower used for the end token of every caption it had to mask.
``interpolate``
    open_clip's own ``resize_text_pos_embed`` (linear, what ``load_checkpoint`` does when context lengths
    differ): stretches the K rows over N positions, so position i reads trained position ≈ i·K/N and even a
    short prompt is encoded with positions it never saw in training.

Measured (``python bench/train.py pos-extend``, bench/results/train_pos_extend.json): a ``clipf-vit-tiny``
pre-trained with frequency masking at K=8 and 50% image masking on the embedded world (8,192 pairs, 5
epochs, 2 seeds), CLIP_benchmark on the world's 5 classification sets and its retrieval set: mean acc1
17.7% (``repeat``) vs 17.6% (``interpolate``) vs 17.8% (at K, prompts cut); mean recall@1/5 6.0% vs 5.9%
vs 5.2%. Both extensions beat cutting text to K on retrieval (long captions), and ``repeat`` is ahead of
``interpolate`` by a margin within seed noise on this tiny model; it is the default because it is also
exact — every text that fits in K (17–86% of that world's prompts) is encoded as the trained tower
encodes it.
An export at K (``context_length="trained"`` or K) copies the table unchanged and cuts evaluation text to
K tokens — for comparison only.

The export folder (``open_clip.create_model_and_transforms("local-dir:DIR")`` /
``open_clip.get_tokenizer("local-dir:DIR")`` load it with nothing from clipf installed)::

    DIR/open_clip_config.json        {"model_cfg": ..., "preprocess_cfg": ..., "clipf": {provenance}}
    DIR/open_clip_model.safetensors  the weights, text positional table at the export's context length

``model_cfg`` is the architecture's config with ``text_cfg.context_length`` = the export's length and
``vision_cfg.patch_dropout`` = 0 (FLIP image masking is a training device; fine-tuning from an export does
not inherit it silently). ``clipf export CKPT --model NAME --out DIR [--context-length 32|trained]
[--pos-extend repeat|interpolate]``; ``clipf.train`` writes ``RUN/<phase>/export/`` itself at the end of
training.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from clipf import upstream
from clipf.files import CONFIG_NAME, FULL_CONTEXT, WEIGHTS_NAME, atomic_dir

POS_EXTEND = ("repeat", "interpolate")
DEFAULT_POS_EXTEND = "repeat"
RESIZE = "open_clip.factory.resize_text_pos_embed"  # the open_clip name text_pos_resize replaces


# --------------------------------------------------------------------------- positional tables
def extend_positions(pos: torch.Tensor, n: int, mode: str = DEFAULT_POS_EXTEND) -> torch.Tensor:
    """A ``[K, W]`` text positional table as ``[n, W]``: ``repeat`` / ``interpolate`` when n > K (see the
    module docstring), the first n rows when n < K."""
    if mode not in POS_EXTEND:
        raise ValueError(f"pos_extend={mode!r} is not one of {', '.join(POS_EXTEND)}")
    k = pos.shape[0]
    if n == k:
        return pos
    if n < k:
        return pos[:n].clone()
    if mode == "repeat":
        return torch.cat([pos, pos[-1:].expand(n - k, -1)], 0).contiguous()
    # exactly open_clip.model.resize_text_pos_embed
    out = F.interpolate(pos.T[None].float(), size=n, mode="linear", align_corners=False)
    return out[0].T.to(pos.dtype).contiguous()


def _extend_table(pos: torch.Tensor, n: int, mode: str, cls_last: bool) -> torch.Tensor:
    if cls_last:  # a text CLS token's row is the table's last; it stays last
        return torch.cat([extend_positions(pos[:-1], n, mode), pos[-1:]], 0)
    return extend_positions(pos, n, mode)


@contextlib.contextmanager
def text_pos_resize(mode: str = DEFAULT_POS_EXTEND) -> Iterator[None]:
    """Within the block, open_clip's ``load_checkpoint`` (``create_model(pretrained=PATH)``) resizes a
    checkpoint's text positional table with :func:`extend_positions` ``mode`` instead of its linear
    interpolation (``interpolate`` is open_clip's own: nothing is swapped). The replaced name is a row of
    :data:`clipf.upstream.PATCHES` (group ``text_pos_resize``)."""
    if mode not in POS_EXTEND:
        raise ValueError(f"pos_extend={mode!r} is not one of {', '.join(POS_EXTEND)}")
    if mode == "interpolate":
        yield
        return

    def resize(state_dict: dict, model: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
        key = "positional_embedding" if "positional_embedding" in state_dict else "text.positional_embedding"
        old = state_dict.get(key)
        target = getattr(model, "positional_embedding", None)
        if target is None and getattr(model, "text", None) is not None:
            target = getattr(model.text, "positional_embedding", None)
        if old is None or target is None or old.shape[0] == target.shape[0]:
            return upstream.original(RESIZE)(state_dict, model, *args, **kwargs)
        cls_last = getattr(getattr(model, "text", None), "cls_emb", None) is not None
        n = target.shape[0] - int(cls_last)
        state_dict[key] = _extend_table(old, n, mode, cls_last)

    with upstream.patched("text_pos_resize", resize_text_pos_embed=resize):
        yield


def text_context(model: torch.nn.Module) -> int:
    """The text context length of a live open_clip model."""
    text = getattr(model, "text", None)
    return int(getattr(text, "context_length", None) or model.context_length)


def extend_context(model: torch.nn.Module, n: int, mode: str = DEFAULT_POS_EXTEND) -> torch.nn.Module:
    """Set a live CLIP / CustomTextCLIP text tower to context ``n`` in place (positional table extended
    with ``mode``, causal mask rebuilt); returns the model. Copy it first to keep the original."""
    holder = model.text if getattr(model, "text", None) is not None else model
    pos = getattr(holder, "positional_embedding", None)
    if pos is None:
        raise ValueError(f"{type(holder).__name__} has no text positional table to extend (HF text tower?)")
    cls_last = getattr(holder, "cls_emb", None) is not None
    with torch.no_grad():
        table = _extend_table(pos.detach(), n, mode, cls_last)
    holder.positional_embedding = torch.nn.Parameter(table, requires_grad=pos.requires_grad)
    if holder is not model and hasattr(model, "positional_embedding"):
        model.positional_embedding = holder.positional_embedding
    for obj in {id(holder): holder, id(model): model}.values():
        if getattr(obj, "attn_mask", None) is not None:
            num_pos = table.shape[0]
            mask = torch.full((num_pos, num_pos), float("-inf"), device=table.device).triu_(1)
            obj.attn_mask = mask.to(obj.attn_mask.dtype)
        if hasattr(obj, "context_length"):
            obj.context_length = n
        if hasattr(obj, "num_pos"):
            obj.num_pos = table.shape[0]
    return model


# --------------------------------------------------------------------------- export
def model_config(
    model: str,
    context_length: int,
    *,
    image_size: int | None = None,
    quick_gelu: bool = False,
    custom_text: bool = False,
) -> dict:
    """open_clip's config of ``model`` with the export's overrides (context length, no patch dropout)."""
    import open_clip

    from clipf import models

    models.register()
    cfg = open_clip.get_model_config(model)
    if cfg is None:
        raise ValueError(f"unknown model {model!r} (open_clip.list_models() has the known names)")
    cfg = copy.deepcopy(cfg)
    cfg["text_cfg"]["context_length"] = int(context_length)
    cfg["vision_cfg"]["patch_dropout"] = 0.0
    if image_size is not None:
        cfg["vision_cfg"]["image_size"] = image_size
    if quick_gelu:
        cfg["quick_gelu"] = True
    if custom_text:
        cfg["custom_text"] = True
    return cfg


def checkpoint_context(checkpoint: str | os.PathLike) -> int:
    """Rows of a checkpoint's text positional table (its trained text context)."""
    from open_clip.factory import load_state_dict

    sd = load_state_dict(str(checkpoint))
    for key in ("positional_embedding", "text.positional_embedding"):
        if key in sd:
            return int(sd[key].shape[0])
    raise ValueError(f"{checkpoint}: no text positional table (positional_embedding) in its state_dict")


def export(
    checkpoint: str | os.PathLike,
    model: str,
    out: str | os.PathLike,
    context_length: int | str | None = FULL_CONTEXT,
    pos_extend: str = DEFAULT_POS_EXTEND,
    *,
    image_size: int | None = None,
    quick_gelu: bool = False,
    custom_text: bool = False,
    preprocess: dict | None = None,
    verify: bool = True,
) -> Path:
    """Write ``out/`` (an open_clip ``local-dir:`` model) from a training checkpoint of ``model``.

    ``context_length``: the export's text context — an int (default 32), or ``"trained"``/None for the
    checkpoint's own K. ``pos_extend``: how K rows become more (``repeat`` | ``interpolate``).
    ``image_size``/``quick_gelu``/``custom_text``: the training run's ``--force-*`` options;
    ``preprocess``: preprocess overrides (mean, std, interpolation, resize_mode). With ``verify``, the
    written folder is loaded back through ``local-dir:`` before it replaces ``out``. Returns ``out``.
    """
    import open_clip
    from safetensors.torch import save_file

    from clipf import models

    models.register()
    if pos_extend not in POS_EXTEND:
        raise ValueError(f"pos_extend={pos_extend!r} is not one of {', '.join(POS_EXTEND)}")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    trained = checkpoint_context(checkpoint)
    n = trained if context_length in (None, "trained") else int(context_length)
    if n < 1:
        raise ValueError(f"context_length must be >= 1, got {n}")
    cfg = model_config(model, n, image_size=image_size, quick_gelu=quick_gelu, custom_text=custom_text)
    # The architecture without any weights, then the checkpoint's: open_clip's create_model ignores
    # `pretrained` for a `local-dir:` / `hf-hub:` name (it loads the folder's own weights), which would
    # export a fine-tune started from an export with its *starting* weights.
    net = open_clip.create_model(
        model,
        load_weights=False,
        pretrained_text=False,
        force_context_length=n,
        force_image_size=image_size,
        force_quick_gelu=quick_gelu,
        force_custom_text=custom_text,
        force_patch_dropout=0.0,
        force_preprocess_cfg=preprocess or None,
    )
    with text_pos_resize(pos_extend):  # load_checkpoint resizes a K-row table with `pos_extend`
        open_clip.load_checkpoint(net, str(checkpoint), strict=True)
    preprocess_cfg = dict(open_clip.get_model_preprocess_cfg(net))
    preprocess_cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in preprocess_cfg.items()}
    meta = {
        "model": model,
        "checkpoint": str(checkpoint.resolve()),
        "trained_context_length": trained,
        "context_length": n,
        "pos_extend": pos_extend if n > trained else None,
    }
    with atomic_dir(out) as tmp:
        state = {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME))
        config = {"model_cfg": cfg, "preprocess_cfg": preprocess_cfg, "clipf": meta}
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        if verify:
            back = open_clip.create_model(f"local-dir:{tmp}")
            if text_context(back) != n:
                raise RuntimeError(f"export check failed: context {text_context(back)} != {n}")
    return Path(out)


def run_config(checkpoint: str | os.PathLike) -> dict:
    """The ``clipf.json`` of the run a checkpoint belongs to (``RUN/<phase>/checkpoints/x.pt``), or {}."""
    path = Path(checkpoint).resolve().parent.parent / "clipf.json"
    return json.loads(path.read_text()) if path.is_file() else {}


# --------------------------------------------------------------------------- `clipf export`
def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="clipf export",
        description="Export a training checkpoint as an open_clip local-dir: model (open_clip_config.json "
        "+ open_clip_model.safetensors) at the full text context length.",
    )
    parser.add_argument(
        "checkpoint", help="epoch_N.pt of a clipf / open_clip_train run, or a state_dict file"
    )
    parser.add_argument("--model", help="architecture (default: the run's clipf.json)")
    parser.add_argument("--out", help="output folder (default: RUN/<phase>/export beside the checkpoints)")
    parser.add_argument(
        "--context-length",
        default=str(FULL_CONTEXT),
        help=f"text context of the export: an integer (default {FULL_CONTEXT}) or 'trained' (the checkpoint's K)",
    )
    parser.add_argument(
        "--pos-extend",
        choices=POS_EXTEND,
        default=None,
        help=f"how the K trained position rows are extended (default: the run's, else {DEFAULT_POS_EXTEND})",
    )
    parser.add_argument("--image-size", type=int, default=None, help="the run's --force-image-size")
    parser.add_argument("--quick-gelu", action="store_true", help="the run's --force-quick-gelu")
    parser.add_argument("--custom-text", action="store_true", help="the run's --force-custom-text")
    args = parser.parse_args(argv)

    run = run_config(args.checkpoint)
    model = args.model or run.get("model")
    if not model:
        parser.error("--model is required (no clipf.json found beside the checkpoint's run)")
    ctx = args.context_length
    if ctx != "trained":
        try:
            ctx = int(ctx)
        except ValueError:
            parser.error(f"--context-length must be an integer or 'trained', got {ctx!r}")
    out = args.out or Path(args.checkpoint).resolve().parent.parent / "export"
    try:
        path = export(
            args.checkpoint,
            model,
            out,
            ctx,
            args.pos_extend or run.get("pos_extend") or DEFAULT_POS_EXTEND,
            image_size=args.image_size or run.get("image_size"),
            quick_gelu=args.quick_gelu or bool(run.get("quick_gelu")),
            custom_text=args.custom_text or bool(run.get("custom_text")),
            preprocess=run.get("preprocess") or None,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"clipf export: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
