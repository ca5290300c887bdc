"""Checks run before any training starts, and the small readers of arguments and environment they share.

Every check raises :class:`UsageError` with a message that names the option at fault: an unknown model, a
non-BPE tokenizer under text masking, missing shards or sample counts, a run folder that already holds a
run, a ``--pretrained`` file that is not a checkpoint of ``--model``. :func:`clipf.engine.make_plan` runs
them on the finished plan (:func:`clipf.engine.plan.check_plan`).
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from clipf.files import CONFIG_NAME


class UsageError(ValueError):
    """Bad command line or inputs, found before any training starts."""


# =========================================================================== arguments and environment
def given(argv: Sequence[str], *flags: str) -> bool:
    """Whether any of ``flags`` is on the command line (``--flag value`` or ``--flag=value``)."""
    return any(a == f or a.startswith(f + "=") for a in argv for f in flags)


def _env_int(*names: str, default: int = 0) -> int:
    for name in names:
        if os.environ.get(name, "").lstrip("-").isdigit():
            return int(os.environ[name])
    return default


def env_rank() -> int:
    """This process's global rank from the launcher's environment (torchrun, MPI, SLURM); 0 alone."""
    return _env_int("RANK", "PMI_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK")


def env_world() -> int:
    """The number of training processes from the launcher's environment; 1 alone."""
    return _env_int("WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", default=1)


def image_size(oc: argparse.Namespace) -> int | None:
    """open_clip_train's ``--force-image-size`` as one int (None: not given, or not square)."""
    size = oc.force_image_size
    if isinstance(size, list | tuple):
        size = size[0] if len(size) == 1 else None
    return size


def preprocess_overrides(oc: argparse.Namespace) -> dict[str, Any]:
    """The image-preprocessing options given to open_clip_train (mean, std, interpolation, resize mode)."""
    out = {"mean": oc.image_mean, "std": oc.image_std}
    out.update(interpolation=oc.image_interpolation, resize_mode=oc.image_resize_mode)
    return {k: v for k, v in out.items() if v is not None}


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The state_dict of a ``.safetensors`` file, a plain state_dict or an open_clip_train checkpoint
    (its ``state_dict``, DDP's ``module.`` prefix removed), on the CPU."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        obj = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # noqa: BLE001 - not a zip checkpoint: plain load
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UsageError(f"--pretrained {path}: not a state_dict / open_clip_train checkpoint")
    if obj and next(iter(obj)).startswith("module."):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


# =========================================================================== the checks
def check_model(name: str) -> int | None:
    """The model's native text context (None when unknown); a clear error for an unknown name."""
    import open_clip
    from open_clip.factory import parse_model_name

    schema, ident = parse_model_name(name)
    if schema == "hf-hub":
        return None
    if schema == "local-dir" and not (Path(ident) / CONFIG_NAME).is_file():
        raise UsageError(f"--model {name}: no {CONFIG_NAME} in {ident}")
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        close = difflib.get_close_matches(name, open_clip.list_models(), n=5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(f"--model {name!r} is not an open_clip or clipf architecture{hint}")
    return int(cfg.get("text_cfg", {}).get("context_length", 77))


def check_bpe_tokenizer(model: str) -> None:
    """Text masking emits CLIP BPE ids: the model's tokenizer must be open_clip's SimpleTokenizer."""
    import open_clip

    tok = open_clip.get_tokenizer(model)
    if type(tok) is not open_clip.SimpleTokenizer:
        raise UsageError(
            f"text masking emits open_clip's CLIP BPE ids; --model {model} uses {type(tok).__name__}"
        )


def _shards(spec: str) -> list[str]:
    from open_clip_train.data import expand_urls

    urls: list[str] = []
    for part in spec.split("::"):
        urls += expand_urls(part)[0]
    return urls


def _local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


def check_data(oc: argparse.Namespace) -> None:
    """Some data is given; local shards / csv files exist; the train split's size is known; enough
    shards for the data workers."""
    from open_clip_train import data as oc_data

    dtype = oc.dataset_type
    if not (oc.train_data or dtype == "synthetic" or oc.val_data or oc.imagenet_val or oc.imagenet_v2):
        raise UsageError(
            "no data: give --train-data (or --dataset-type synthetic), --val-data or --imagenet-val"
        )
    if dtype == "synthetic" and not oc.train_num_samples:
        raise UsageError("--dataset-type synthetic needs --train-num-samples")
    for flag, spec in (("--train-data", oc.train_data), ("--val-data", oc.val_data)):
        if not spec:
            continue
        kind = dtype
        if kind == "auto":
            ext = spec.split(".")[-1]
            kind = {"csv": "csv", "tsv": "csv", "tar": "webdataset"}.get(ext)
            if kind is None:
                raise UsageError(f"{flag} {spec}: cannot tell the dataset type; give --dataset-type")
        if kind == "csv":
            if not Path(spec).is_file():
                raise UsageError(f"{flag} {spec}: no such file")
            continue
        if kind != "webdataset":
            continue
        try:
            urls = _shards(spec)
        except Exception as exc:  # noqa: BLE001 - braceexpand errors vary
            raise UsageError(f"{flag} {spec}: cannot expand the shard pattern ({exc})") from None
        missing = [u for u in urls if _local(u) and not os.path.isfile(u)]
        if missing:
            raise UsageError(
                f"{flag}: {len(missing)} of {len(urls)} shards do not exist (first: {missing[0]})"
            )
        if flag == "--train-data":
            if not oc.train_num_samples:
                try:
                    size, _ = oc_data.get_dataset_size(spec)
                except Exception:  # noqa: BLE001 - a sizes.json without an entry for a shard
                    size = None
                if not size:
                    raise UsageError(
                        f"{flag}: the number of samples is unknown (no sizes.json / __len__ beside the "
                        "shards): give --train-num-samples"
                    )
            workers = max(1, oc.workers) * env_world()
            if not oc.dataset_resampled and len(urls) < workers:
                raise UsageError(
                    f"{flag}: {len(urls)} shards for {workers} data workers (--workers x processes); "
                    "use fewer --workers or --dataset-resampled"
                )
    if oc.imagenet_val and not Path(oc.imagenet_val).is_dir():
        raise UsageError(f"--imagenet-val {oc.imagenet_val}: no such folder")


def check_run_dir(oc: argparse.Namespace) -> None:
    """``--resume`` names something to resume; a new run does not write into an existing one."""
    if oc.resume == "latest":
        if not oc.name:
            raise UsageError("--resume latest needs --name (the run to resume)")
        return
    if oc.resume and not oc.resume.startswith(("s3://", "gs://")) and not Path(oc.resume).is_file():
        raise UsageError(f"--resume {oc.resume}: no such checkpoint")
    if oc.name and oc.logs and oc.logs.lower() != "none":
        run = Path(oc.logs, oc.name)
        if (run / "out.log").exists() and env_rank() == 0:
            raise UsageError(
                f"{run} already holds a run: --resume latest to continue it, or another --name / --logs"
            )


def check_pretrained(oc: argparse.Namespace, context: int) -> None:
    """A ``--pretrained`` file must be a checkpoint of ``--model`` (positional tables may differ in
    length: open_clip resizes them); a tag must be one open_clip knows for the model."""
    import open_clip
    from open_clip.factory import convert_state_dict

    path = oc.pretrained
    if not os.path.isfile(path):
        if open_clip.get_pretrained_cfg(oc.model, path):
            return
        tags = open_clip.list_pretrained_tags_by_model(oc.model)
        raise UsageError(
            f"--pretrained {path}: no such file, nor a pretrained tag of {oc.model} (tags: {tags})"
        )
    if path.endswith((".npz", ".npy")) or env_rank() != 0:
        return
    try:
        sd = read_state_dict(path)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable file
        raise UsageError(f"--pretrained {path}: cannot read it ({type(exc).__name__}: {exc})") from None
    net = open_clip.create_model(
        oc.model,
        device="meta",
        force_context_length=context,
        force_image_size=image_size(oc),
        force_quick_gelu=oc.force_quick_gelu,
        force_custom_text=oc.force_custom_text,
    )
    sd = convert_state_dict(net, sd)
    if "positional_embedding" in sd and not hasattr(net, "positional_embedding"):
        from open_clip.model import convert_to_custom_text_state_dict

        sd = convert_to_custom_text_state_dict(sd)
    want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in sd.items()}
    resized = {"positional_embedding", "text.positional_embedding", "visual.positional_embedding"}
    missing = sorted(set(want) - set(have) - {"logit_bias"})
    extra = sorted(set(have) - set(want) - {"text.transformer.embeddings.position_ids"})
    shapes = [
        f"{k} {have[k]} vs {want[k]}"
        for k in sorted(set(want) & set(have))
        if have[k] != want[k]
        and not (k in resized and have[k][-1:] == want[k][-1:])
        and math.prod(have[k]) != math.prod(want[k])
    ]
    if missing or extra or shapes:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if extra:
            detail.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        if shapes:
            detail.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
        raise UsageError(
            f"--pretrained {path} is not a checkpoint of --model {oc.model}: " + ", ".join(detail)
        )
