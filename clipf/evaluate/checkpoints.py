"""What one evaluation runs on: a run's phase export, an export folder, or a training checkpoint (``.pt``,
exported to a temporary folder first)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from clipf.evaluate.base import PHASES, EvalError, file_sha256, sha_of
from clipf.files import CONFIG_NAME, FULL_CONTEXT, WEIGHTS_NAME


@dataclass
class Checkpoint:
    """What one evaluation runs on: an open_clip ``local-dir`` export, or a ``.pt`` exported on demand."""

    label: str  # the RUN/eval/<label>/ folder
    source: Path  # export folder or training checkpoint
    sha256: str  # weights (+ config of an export) hash: the cache key's model part
    export: Path | None = None  # local-dir folder (None: a .pt, exported when needed)
    info: dict = field(default_factory=dict)


def check_export(folder: str | os.PathLike) -> dict:
    """Validate an open_clip ``local-dir`` export (config readable, safetensors whole); returns its hashes
    and text context length. Raises :class:`EvalError` naming the bad file."""
    folder = Path(folder)
    cfg_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for path in (cfg_path, weights):
        if not path.is_file():
            raise EvalError(f"{path}: missing — {folder} is not a finished export (open_clip local-dir)")
    try:
        cfg = json.loads(cfg_path.read_text())
        model_cfg = cfg["model_cfg"]
        context = int(model_cfg["text_cfg"].get("context_length", 77))
    except (ValueError, KeyError, TypeError) as exc:
        raise EvalError(f"{cfg_path}: not an open_clip config ({type(exc).__name__}: {exc})") from exc
    try:
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as fh:
            n = len(list(fh.keys()))
    except Exception as exc:  # SafetensorError is not importable by name
        raise EvalError(f"{weights}: corrupt or truncated safetensors file ({exc})") from exc
    if n == 0:
        raise EvalError(f"{weights}: no tensors")
    config_sha = sha_of({"model_cfg": model_cfg, "preprocess_cfg": cfg.get("preprocess_cfg")})
    return {
        "weights_sha256": file_sha256(weights),
        "config_sha256": config_sha,
        "context_length": context,
        "provenance": cfg.get("clipf"),
    }


def export_checkpoint(folder: Path, label: str) -> Checkpoint:
    """The :class:`Checkpoint` of an export folder (checked: :func:`check_export`)."""
    info = check_export(folder)
    sha = hashlib.sha256((info["weights_sha256"] + info["config_sha256"]).encode()).hexdigest()
    return Checkpoint(label, folder, sha, folder, info)


def _pt_label(path: Path) -> str:
    if path.parent.name == "checkpoints" and path.parent.parent.name:
        return f"{path.parent.parent.name}-{path.stem}"
    return path.stem


def resolve_checkpoint(run: str | os.PathLike, checkpoint: str, label: str | None = None) -> Checkpoint:
    """``pretrain`` / ``finetune`` (``RUN/<phase>/export``), an export folder, or a training checkpoint
    file (``.pt``; exported before evaluation)."""
    run = Path(run)
    if checkpoint in PHASES:
        phase = run / checkpoint
        folder = phase / "export"
        if not folder.is_dir():
            ckpts = sorted(p.name for p in (phase / "checkpoints").glob("*.pt"))
            hint = (
                f"checkpoints there: {', '.join(ckpts)}; `clipf export {phase}/checkpoints/{ckpts[-1]}` "
                "writes the export"
                if ckpts
                else "no checkpoints either: has this phase been trained?"
            )
            if not phase.is_dir():
                raise EvalError(f"{phase}: no such phase folder (run not trained to {checkpoint}?)")
            raise EvalError(f"{folder}: no export — {checkpoint} did not finish ({hint})")
        return export_checkpoint(folder, label or checkpoint)
    path = Path(checkpoint)
    if path.is_dir():
        default = path.parent.name if path.name == "export" and path.parent.name else path.name
        return export_checkpoint(path, label or default)
    if not path.is_file():
        raise EvalError(
            f"--checkpoint {checkpoint}: not pretrain/finetune, an export folder nor a checkpoint file"
        )
    if path.stat().st_size == 0:
        raise EvalError(f"{path}: empty checkpoint file")
    if path.suffix == ".safetensors" and (path.parent / CONFIG_NAME).is_file():
        return export_checkpoint(path.parent, label or path.parent.name)
    info = {"weights_sha256": file_sha256(path), "checkpoint": str(path.resolve())}
    recipe = {k: run_config(run, path).get(k) for k in _EXPORT_KEYS}  # how it will be exported
    sha = hashlib.sha256((info["weights_sha256"] + sha_of({**recipe, "context": FULL_CONTEXT})).encode())
    return Checkpoint(label or _pt_label(path), path, sha.hexdigest(), None, info)


_EXPORT_KEYS = ("model", "pos_extend", "image_size", "quick_gelu", "custom_text", "preprocess")


def run_config(run: Path, checkpoint: Path) -> dict:
    """The clipf.json describing how a .pt was trained (its phase's, else the run's pre-training one)."""
    for path in (checkpoint.resolve().parent.parent / "clipf.json", run / "pretrain" / "clipf.json"):
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except ValueError as exc:
                raise EvalError(f"{path}: unreadable JSON ({exc})") from exc
    return {}


@contextlib.contextmanager
def exported(ckpt: Checkpoint, run: Path, model: str | None = None) -> Iterator[Path]:
    """The ``local-dir`` folder of ``ckpt``: its export, or a temporary export of a ``.pt`` (removed after)."""
    if ckpt.export is not None:
        yield ckpt.export
        return
    try:
        from clipf import export as clipf_export
    except ImportError as exc:  # pragma: no cover - clipf.export ships with clipf
        raise EvalError(
            f"{ckpt.source}: a training checkpoint needs an export first and clipf.export is unavailable "
            f"({exc}); export it with `clipf export` and pass the folder"
        ) from exc
    cfg = run_config(run, ckpt.source)
    model = model or cfg.get("model")
    if not model:
        raise EvalError(
            f"{ckpt.source}: cannot export it — no clipf.json beside its run names the model (pass model=)"
        )
    with tempfile.TemporaryDirectory(prefix="clipf-eval-") as tmp:
        try:
            if cfg.get("objective") == "uta":  # student vision tower + the teacher's text tower
                from clipf.objectives import uta

                out = uta.export(ckpt.source, Path(tmp) / "export", verify=False)
            else:
                out = clipf_export.export(
                    ckpt.source,
                    model,
                    Path(tmp) / "export",
                    FULL_CONTEXT,
                    cfg.get("pos_extend") or clipf_export.DEFAULT_POS_EXTEND,
                    image_size=cfg.get("image_size"),
                    quick_gelu=bool(cfg.get("quick_gelu")),
                    custom_text=bool(cfg.get("custom_text")),
                    preprocess=cfg.get("preprocess") or None,
                    verify=False,
                )
        except Exception as exc:
            raise EvalError(f"{ckpt.source}: cannot export it ({type(exc).__name__}: {exc})") from exc
        info = check_export(out)
        ckpt.info.update({k: info[k] for k in ("config_sha256", "context_length")})
        ckpt.info["export_weights_sha256"] = info["weights_sha256"]
        ckpt.info["model"] = model
        yield out
