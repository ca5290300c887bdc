"""Training compute of UTA and of contrastive CLIP, counted in FLOPs, and the rule that matches a UTA
student's epochs to a CLIP baseline's compute (:data:`MATCH_RULE`, :func:`match_compute`).

FLOPs are counted by ``torch.utils.flop_counter`` on meta tensors (shapes only, no memory): forward and
backward of what trains, the frozen teacher's forward for UTA.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipf import export as E
from clipf.engine import UsageError
from clipf.objectives.uta.masks import ALIASES, DEFAULT_MASKER, DEFAULT_RATIO
from clipf.objectives.uta.model import (
    UTALoss,
    UTAModel,
    image_grid,
    quiet_logger,
    resolve_teacher,
    student_config,
    teacher_model_config,
)


def _meta_model(model_cfg: Mapping[str, Any]) -> nn.Module:
    """An open_clip model of a config on the meta device: shapes only, no memory, no weights."""
    import open_clip

    with tempfile.TemporaryDirectory(prefix="clipf-uta-") as tmp:
        (Path(tmp) / E.CONFIG_NAME).write_text(json.dumps({"model_cfg": dict(model_cfg)}))
        with quiet_logger(""), torch.device("meta"):
            return open_clip.create_model(
                f"local-dir:{tmp}", load_weights=False, pretrained_text=False, device="meta", output_dict=True
            )


def _count_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with quiet_logger("torch.utils.module_tracker"), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _image_batch(model_cfg: Mapping[str, Any], batch: int) -> torch.Tensor:
    (h, w), _ = image_grid(model_cfg["vision_cfg"]["image_size"], model_cfg["vision_cfg"]["patch_size"])
    return torch.empty(batch, 3, h, w, device="meta")


def clip_flops_per_sample(
    model_cfg: Mapping[str, Any], text_tokens: int | None = None, image_mask: float = 0.0, batch: int = 2
) -> float:
    """Training FLOPs per image-text pair of a contrastive (CLIP / FLIP) step of an architecture: forward +
    backward of both towers at ``text_tokens`` text positions (default: the config's) and FLIP patch
    dropout ``image_mask``, counted by ``torch.utils.flop_counter`` on meta tensors (the optimizer step and
    the loss's batch x batch logits are left out)."""
    from open_clip.loss import ClipLoss

    cfg = copy.deepcopy(dict(model_cfg))
    if text_tokens:
        cfg["text_cfg"]["context_length"] = int(text_tokens)
    cfg["vision_cfg"]["patch_dropout"] = float(image_mask or 0.0)
    net = _meta_model(cfg).train()
    images = _image_batch(cfg, batch)
    texts = torch.zeros(
        batch, int(cfg["text_cfg"].get("context_length", 77)), dtype=torch.long, device="meta"
    )
    loss = ClipLoss()

    def step() -> None:
        out = net(images, texts)
        loss(out["image_features"], out["text_features"], out["logit_scale"]).backward()

    return _count_flops(step) / batch


def uta_flops_per_sample(
    student_cfg: Mapping[str, Any],
    teacher_cfg: Mapping[str, Any],
    ratio: float = DEFAULT_RATIO,
    masker: str = DEFAULT_MASKER,
    head: str = "linear",
    batch: int = 2,
) -> dict[str, float]:
    """Training FLOPs per image of a UTA step (``flops``): the frozen teacher's forward on the whole image
    (``teacher``, also given apart) + forward and backward of the student's vision tower on its kept patches
    and of the head; the text tower is not run. Counted as :func:`clip_flops_per_sample`."""
    with torch.device("meta"):
        student, teacher = _meta_model(student_cfg), _meta_model(teacher_cfg)
        for name, p in student.named_parameters():
            p.requires_grad = name.startswith("visual.")
        model = UTAModel(student, teacher, masker=masker, ratio=ratio, head=head).train()
    images = _image_batch(student_cfg, batch)
    loss = UTALoss()
    total = _count_flops(lambda: loss(**model(images)).backward())
    return {"flops": total / batch, "teacher": _count_flops(lambda: model.teach(images)) / batch}


def teacher_config(spec: str | os.PathLike) -> dict[str, Any]:
    """The open_clip config of a ``--teacher`` (nothing is loaded)."""
    import open_clip

    t = resolve_teacher(str(spec))
    if t.model_cfg:
        return t.model_cfg
    if t.name.startswith("local-dir:"):
        return json.loads((Path(t.name[len("local-dir:") :]) / E.CONFIG_NAME).read_text())["model_cfg"]
    if t.name.startswith("hf-hub:"):
        raise UsageError(f"--teacher {spec}: the config of an hf-hub: teacher is not read offline")
    return teacher_model_config(t.name, {}) or copy.deepcopy(open_clip.get_model_config(t.name))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def phase_compute(phase_dir: str | os.PathLike) -> dict[str, Any]:
    """Training compute of a finished phase (``RUN/pretrain``): ``epochs``, ``samples`` seen (metrics.json's
    ``samples_seen``, else epochs x train_num_samples), ``flops_per_sample`` (:func:`clip_flops_per_sample`
    for a contrastive run, :func:`uta_flops_per_sample` for a UTA one), ``flops`` and ``train_seconds``."""
    phase_dir = Path(phase_dir)
    cfg = _read_json(phase_dir / "clipf.json")
    if not cfg:
        raise FileNotFoundError(f"{phase_dir / 'clipf.json'}: missing (has this phase been trained?)")
    records = _read_json(phase_dir / "metrics.json") or []
    last = records[-1] if records else {}
    samples = last.get("samples_seen") or int(cfg.get("epochs") or 0) * int(cfg.get("train_num_samples") or 0)
    out: dict[str, Any] = {
        "objective": cfg.get("objective") or "clip",
        "model": cfg.get("model"),
        "epochs": int(last.get("epoch") or cfg.get("epochs") or 0),
        "samples": int(samples),
        "train_seconds": last.get("train_seconds_total"),
    }
    if out["objective"] == "uta":
        u = cfg["uta"]
        teacher = u["teacher"].get("source") or u["teacher"]["spec"]
        f = uta_flops_per_sample(
            u["model_cfg"], teacher_config(teacher), u["mask_ratio"], u["masker"], u["head"]
        )
        out.update(
            flops_per_sample=f["flops"], teacher_flops_per_sample=f["teacher"], mask_ratio=u["mask_ratio"]
        )
    else:
        model_cfg = E.model_config(
            cfg["model"],
            int(cfg.get("text_context") or cfg.get("text_tokens") or E.FULL_CONTEXT),
            image_size=cfg.get("image_size"),
            quick_gelu=bool(cfg.get("quick_gelu")),
            custom_text=bool(cfg.get("custom_text")),
        )
        out.update(
            flops_per_sample=clip_flops_per_sample(model_cfg, None, cfg.get("image_mask") or 0.0),
            text_tokens=model_cfg["text_cfg"]["context_length"],
            image_mask=cfg.get("image_mask") or 0.0,
        )
    out["flops"] = out["flops_per_sample"] * out["samples"]
    return out


MATCH_RULE = (
    "UTA epochs = round(S_clip x F_clip / (N x F_uta)): S_clip samples the CLIP baseline's pre-training saw, "
    "F_clip its training FLOPs per pair (both towers, forward + backward), N the UTA run's samples per epoch, "
    "F_uta the UTA training FLOPs per image (the frozen teacher's forward + the student's forward and "
    "backward on its kept patches); FLOPs counted by torch.utils.flop_counter. The teacher's own training is "
    "not counted (it is the CLIP baseline itself)."
)


def match_compute(
    baseline: str | os.PathLike,
    teacher: str | os.PathLike,
    student_model: str,
    samples_per_epoch: int,
    ratio: float = DEFAULT_RATIO,
    masker: str = DEFAULT_MASKER,
    head: str = "linear",
    epochs: int | str = "matched",
) -> dict[str, Any]:
    """UTA epochs at the training compute of the CLIP baseline's pre-training ``baseline`` (``RUN/pretrain``),
    by :data:`MATCH_RULE`, or ``epochs`` as given (an integer); the record of both sides' compute."""
    clip = phase_compute(baseline)
    student_cfg = student_config(student_model, teacher_config(teacher))
    f = uta_flops_per_sample(student_cfg, teacher_config(teacher), ratio, masker, head)
    n = int(samples_per_epoch)
    if n < 1:
        raise ValueError(f"samples_per_epoch must be >= 1, got {samples_per_epoch}")
    if epochs == "matched":
        n_epochs = max(1, round(clip["flops"] / (n * f["flops"])))
    elif isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1:
        n_epochs = epochs
    else:
        raise ValueError(f"epochs: 'matched' or a positive integer, got {epochs!r}")
    uta = {
        "model": student_model,
        "teacher": str(teacher),
        "mask_ratio": float(ratio),
        "masker": ALIASES.get(masker, masker),
        "samples_per_epoch": n,
        "flops_per_sample": f["flops"],
        "teacher_flops_per_sample": f["teacher"],
        "epochs": n_epochs,
        "samples": n_epochs * n,
        "flops": n_epochs * n * f["flops"],
    }
    return {
        "rule": MATCH_RULE if epochs == "matched" else f"epochs given: {epochs}",
        "matched": epochs == "matched",
        "epochs": n_epochs,
        "baseline": {"run": str(baseline), **clip},
        "uta": uta,
        "flops_per_sample_vs_baseline": f["flops"] / clip["flops_per_sample"],
        "compute_vs_baseline": uta["flops"] / clip["flops"] if clip["flops"] else None,
    }
