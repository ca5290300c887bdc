"""Running CLIP_benchmark: its dataset builder, model loader and metrics on one checkpoint at a time,
cached by a key of weights, dataset fingerprint and options; :func:`evaluate_run` over a run's phases."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from clipf.evaluate.base import DEFAULT_RECALL_K, PHASES, EvalError, sha_of
from clipf.evaluate.checkpoints import Checkpoint, export_checkpoint, exported, resolve_checkpoint
from clipf.evaluate.collect import run_metadata, tidy_frame, tidy_rows, write_summary
from clipf.evaluate.datasets import DatasetSpec, check_dataset, discover, fingerprint, world_root
from clipf.evaluate.protocols import (
    DEFAULT_PROTOCOL,
    PROTOCOLS,
    PromptSpec,
    check_protocols,
    masked_tokenizer,
    phase_config,
    prompt_spec,
    protocol_dir,
)
from clipf.files import FULL_CONTEXT, write_json


def versions() -> dict:
    """Versions of clip_benchmark, open_clip, torch and clipf (recorded with every result)."""
    from importlib.metadata import version

    out = {}
    for pkg in ("clip_benchmark", "open_clip_torch", "torch"):
        with contextlib.suppress(Exception):
            out[pkg] = version(pkg)
    import clipf

    out["clipf"] = clipf.__version__
    return out


def recall_ks(spec: DatasetSpec, recall_k: Sequence[int]) -> list[int]:
    """The recall@k of a retrieval set that it can have (k <= its number of images)."""
    ks = [int(k) for k in recall_k]
    if spec.n_images is None:
        return ks
    kept = [k for k in ks if k <= spec.n_images]
    if len(kept) < len(ks):
        warnings.warn(
            f"{spec.name}: {spec.n_images} images, recall@k for k in {[k for k in ks if k not in kept]} "
            "left out",
            stacklevel=3,
        )
    if not kept:
        raise EvalError(f"{spec.name}: {spec.n_images} images: no recall@k with k in {ks} is defined")
    return kept


def cache_key(
    ckpt_sha: str, spec: DatasetSpec, data_fp: str, options: Mapping, prompts: PromptSpec | None = None
) -> str:
    """The key a cached result must carry to be read back instead of recomputed. ``prompts``: the prompt
    protocol's encoding (:class:`~clipf.evaluate.protocols.PromptSpec`); the full protocol's adds nothing,
    so its key is the one results had before protocols existed, and a ``masked`` protocol that encodes as
    ``full`` (a phase trained without a masker) shares it."""
    opts = {k: options[k] for k in ("split", "language", "amp")}
    if spec.task == "zeroshot_retrieval":
        opts["recall_k"] = list(options["recall_k"])
    opts["annotation_file"] = spec.annotation_file
    opts["clip_benchmark"] = versions().get("clip_benchmark")
    extra = None if prompts is None else prompts.key()
    if extra is not None:
        opts["prompts"] = extra
    return sha_of({"model": ckpt_sha, "dataset": spec.name, "data": data_fp, "task": spec.task, **opts})


@contextlib.contextmanager
def _quiet_and_offline(verbose: bool, threads: int | None, device: str) -> Iterator[None]:
    """Torch threads on CPU, CLIP_benchmark's progress bars off unless verbose, its shell downloads
    refused (the patches: :data:`clipf.upstream.PATCHES`, groups ``clip_benchmark_*``)."""
    import torch

    from clipf import upstream

    def refuse(cmd: Any, *args: Any, **kwargs: Any) -> int:
        if isinstance(cmd, str) and cmd.startswith("which "):
            return 1  # has_kaggle()/has_gdown(): report the tool missing
        raise EvalError(f"clip_benchmark tried to download ({cmd!r}); clipf eval never downloads")

    groups = ["clip_benchmark_offline"] + ([] if verbose else ["clip_benchmark_quiet"])
    old_threads = torch.get_num_threads()
    if device == "cpu" and threads:
        torch.set_num_threads(threads)
    try:
        with upstream.patched(*groups, download=refuse):
            yield
    finally:
        torch.set_num_threads(old_threads)


def _describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, a DataLoader worker's traceback cut to its first and last line."""
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1].strip()}"
    return f"{type(exc).__name__}: {text}"


def prompt_tokenizer(tokenizer: Callable, options: Mapping, prompts: PromptSpec | None = None) -> Callable:
    """The tokenizer CLIP_benchmark encodes the text side with: zero-shot class prompts (template x class
    name) and retrieval captions. The one place the evaluation protocol's prompt encoding is chosen
    (:mod:`clipf.evaluate.protocols`): ``full`` (or None), the export's own open_clip tokenizer at its full
    context; ``masked``, the checkpoint's training masker at its K, zero-padded to the export's context
    (``texts -> LongTensor[N, context]``; a fresh one per call, so masks do not depend on what was
    evaluated before). Each protocol's encoding is part of :func:`cache_key`."""
    if prompts is None or prompts.same_as_full:
        return tokenizer
    context = int(getattr(tokenizer, "context_length", 0) or FULL_CONTEXT)
    return masked_tokenizer(prompts, context)


def benchmark_dataset(model, transform, tokenizer, spec: DatasetSpec, options: Mapping) -> dict:
    """One dataset through CLIP_benchmark's builder and metric, as its ``clip_benchmark.cli.run`` does it
    (with ``download=False``)."""
    import torch
    from clip_benchmark.datasets.builder import build_dataset, get_dataset_collate_fn
    from clip_benchmark.metrics import image_caption_selection, zeroshot_classification, zeroshot_retrieval

    device, amp, bs, workers = (
        options["device"],
        options["amp"],
        options["batch_size"],
        options["num_workers"],
    )
    torch.manual_seed(options.get("seed", 0))
    dataset = build_dataset(
        dataset_name=spec.name,
        root=str(spec.root),
        transform=transform,
        split=options["split"],
        annotation_file=spec.annotation_file,
        download=False,
        language=options["language"],
        task=spec.task,
    )
    if spec.name.startswith("wds/"):
        # webdataset >= 1.0 fails a DataLoader worker that gets no shard: at most one worker a shard
        workers = min(workers, spec.nshards or 1)
        loader = torch.utils.data.DataLoader(
            dataset.batched(bs), batch_size=None, shuffle=False, num_workers=workers
        )
    else:
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=bs,
            shuffle=False,
            num_workers=workers,
            collate_fn=get_dataset_collate_fn(spec.name),
        )
    if spec.task == "zeroshot_classification":
        templates, classes = getattr(dataset, "templates", None), getattr(dataset, "classes", None)
        if not templates or not classes:
            raise EvalError(f"{spec.name}: no class names / templates for zero-shot classification")
        return zeroshot_classification.evaluate(
            model, loader, tokenizer, classes, templates, device=device, amp=amp, verbose=False
        )
    if spec.task == "zeroshot_retrieval":
        return zeroshot_retrieval.evaluate(
            model, loader, tokenizer, recall_k_list=list(options["recall_k"]), device=device, amp=amp
        )
    return image_caption_selection.evaluate(model, loader, tokenizer, device=device, amp=amp)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _default_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 16))


def eval_options(
    batch_size: int,
    num_workers: int | None,
    split: str,
    language: str,
    recall_k: Sequence[int],
    amp: bool | None,
    device: str | None,
    threads: int | None,
) -> dict:
    """The evaluation options (device, amp, batch size, workers, split, language, recall@k, threads)
    with the defaults filled in."""
    device = device or _default_device()
    threads = threads or _default_threads()
    return {
        "device": device,
        "amp": bool(device.startswith("cuda")) if amp is None else bool(amp),
        "batch_size": int(batch_size),
        "num_workers": min(4, threads) if num_workers is None else int(num_workers),
        "split": split,
        "language": language,
        "recall_k": [int(k) for k in recall_k],
        "threads": threads,
        "seed": 0,
    }


def _load_cached(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        dump = json.loads(path.read_text())
    except ValueError:
        return None  # a partial or foreign file is recomputed
    if isinstance(dump, dict) and dump.get("clipf", {}).get("cache_key") == key and "metrics" in dump:
        return dump
    return None


def plan_datasets(
    datasets: Sequence[str] | None, dataset_root: str | os.PathLike | None, world: Any, split: str, ann: str
) -> list[DatasetSpec]:
    """The datasets to evaluate, each checked (:func:`check_dataset`) before any model is loaded."""
    root = str(world_root(world)) if world is not None and dataset_root is None else dataset_root
    root = None if root is None else str(root)
    names = list(datasets or [])
    if not names:
        if root is None:
            raise EvalError("no datasets: pass datasets (--datasets), or --dataset-root/--world to find them")
        names = discover(root, split)
    return [check_dataset(n, root, split, ann) for n in dict.fromkeys(names)]


def evaluate_model(
    export: str | os.PathLike,
    datasets: Sequence[str] | None = None,
    dataset_root: str | os.PathLike | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    world: str | os.PathLike | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    split: str = "test",
    language: str = "en",
    recall_k: Sequence[int] = DEFAULT_RECALL_K,
    amp: bool | None = None,
    device: str | None = None,
    threads: int | None = None,
    annotation_file: str = "",
    prompts: str = "full",
    force: bool = False,
    verbose: bool = False,
) -> dict[str, dict]:
    """CLIP_benchmark on one ``local-dir`` export: ``{dataset: CLIP_benchmark JSON}``; with ``out_dir``,
    written (and read back when cached) as ``out_dir/<dataset>.json`` (``out_dir/<protocol>/`` for a
    protocol other than ``full``). ``prompts``: ``full`` | ``masked`` (:mod:`clipf.evaluate.protocols`;
    masked reads the clipf.json of the phase the export came from)."""
    (protocol,) = check_protocols(prompts) if isinstance(prompts, str) else [None]
    if protocol is None:
        raise EvalError(
            f"evaluate_model takes one prompt protocol ({' | '.join(PROTOCOLS)}), got {prompts!r}"
        )
    specs = plan_datasets(datasets, dataset_root, world, split, annotation_file)
    ckpt = export_checkpoint(Path(export), Path(export).name)
    opts = eval_options(batch_size, num_workers, split, language, recall_k, amp, device, threads)
    out = None if out_dir is None else Path(out_dir)
    results = evaluate_checkpoint(ckpt, specs, opts, Path(export), out, force, verbose, protocols=[protocol])
    return results[protocol]


def _checkpoint_epoch(ckpt: Checkpoint) -> int | None:
    """The 1-based epoch of a training checkpoint file (``epoch_N.pt``), None for an export."""
    m = re.fullmatch(r"epoch_(\d+)", Path(ckpt.source).stem) if ckpt.export is None else None
    return int(m.group(1)) if m else None


def prompt_specs(
    ckpt: Checkpoint, run: Path, protocols: Sequence[str], seed: int = 0
) -> dict[str, PromptSpec]:
    """Each protocol's encoding of a checkpoint's text side (``masked``: from its phase's clipf.json)."""
    out: dict[str, PromptSpec] = {}
    config: tuple[dict, Path | None] | None = None
    for protocol in protocols:
        if protocol != "full" and config is None:
            config = phase_config(ckpt.source, ckpt.export, ckpt.info.get("provenance"), run)
        cfg, path = config or ({}, None)
        out[protocol] = prompt_spec(protocol, cfg, path, epoch=_checkpoint_epoch(ckpt), seed=seed)
    return out


def evaluate_checkpoint(
    ckpt: Checkpoint,
    specs: Sequence[DatasetSpec],
    opts: dict,
    run: Path,
    out_dir: Path | None,
    force: bool,
    verbose: bool,
    run_name: str | None = None,
    computed: list | None = None,
    protocols: Sequence[str] = ("full",),
) -> dict[str, dict[str, dict]]:
    """CLIP_benchmark on one checkpoint over ``specs`` under each prompt protocol: ``{protocol: {dataset:
    CLIP_benchmark JSON}}``, read back from ``out_dir`` (:func:`~clipf.evaluate.protocols.protocol_dir`)
    where cached, else computed (and written there); ``computed`` collects the (checkpoint, dataset[,
    protocol]) computed. A protocol that encodes as another one (``masked`` on an unmasked phase) is
    computed once and written for both."""
    protocols = check_protocols(protocols)
    prompts = prompt_specs(ckpt, run, protocols, opts.get("seed", 0))
    for protocol, p in prompts.items():
        for note in p.notes:
            print(f"clipf eval: note: {ckpt.label} ({protocol} prompts): {note}", flush=True)
    results: dict[str, dict[str, dict]] = {p: {} for p in protocols}
    todo: dict[str, list] = {}  # cache key -> [(protocol, spec, spec_opts, fp, path), ...]
    found: dict[str, dict] = {}  # cache key -> a cached result with it
    for spec in specs:
        fp = fingerprint(spec.files)
        spec_opts = {**opts, "recall_k": recall_ks(spec, opts["recall_k"])}
        for protocol in protocols:
            key = cache_key(ckpt.sha256, spec, fp, spec_opts, prompts[protocol])
            path = None if out_dir is None else protocol_dir(out_dir, protocol) / f"{spec.slug}.json"
            cached = None if (force or path is None) else _load_cached(path, key)
            if cached is not None:
                results[protocol][spec.name] = found[key] = cached
                continue
            todo.setdefault(key, []).append((protocol, spec, spec_opts, fp, path))
            if prompts[protocol].same_as_full and path is not None and not force and key not in found:
                full = _load_cached(protocol_dir(out_dir, DEFAULT_PROTOCOL) / f"{spec.slug}.json", key)
                if full is not None:
                    found[key] = full
    for key in [k for k in todo if k in found]:  # encodes as a protocol already cached: its numbers
        for protocol, spec, _, _, path in todo.pop(key):
            clipf_block = {**found[key]["clipf"], "protocol": protocol, "prompts": prompts[protocol].record()}
            results[protocol][spec.name] = dump = {**found[key], "clipf": clipf_block}
            write_json(path, dump)
    if not todo:
        return results
    from clip_benchmark.models import load_clip

    with exported(ckpt, run) as folder, _quiet_and_offline(verbose, opts["threads"], opts["device"]):
        model_name = f"local-dir:{Path(folder).resolve()}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            try:
                model, transform, tokenizer = load_clip(
                    model_type="open_clip",
                    model_name=model_name,
                    pretrained="",
                    cache_dir=None,
                    device=opts["device"],
                )
            except Exception as exc:
                raise EvalError(
                    f"{ckpt.source}: open_clip cannot load it ({type(exc).__name__}: {exc})"
                ) from exc
        model.eval()
        context = int(getattr(tokenizer, "context_length", 0) or ckpt.info.get("context_length") or 0)
        if context and context < FULL_CONTEXT:
            warnings.warn(
                f"{ckpt.source}: text context {context} < {FULL_CONTEXT}: evaluation text is cut to {context} "
                "tokens (export at the full context with `clipf export --context-length 32`)",
                stacklevel=2,
            )
        for key, jobs in todo.items():
            protocol, spec, spec_opts, fp, _ = jobs[0]
            texts = prompt_tokenizer(tokenizer, spec_opts, prompts[protocol])
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=r"WebDataset\(shardshuffle=")
                    warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
                    metrics = benchmark_dataset(model, transform, texts, spec, spec_opts)
            except EvalError:
                raise
            except Exception as exc:
                raise EvalError(
                    f"{spec.name} ({spec.root}): CLIP_benchmark failed: {_describe(exc)}"
                ) from exc
            seconds = round(time.perf_counter() - t0, 3)
            for protocol, spec, spec_opts, fp, path in jobs:
                dump = _result_json(
                    ckpt,
                    spec,
                    spec_opts,
                    opts,
                    metrics,
                    run_name,
                    context,
                    fp,
                    key,
                    seconds,
                    prompts[protocol],
                )
                if path is not None:
                    write_json(path, dump)
                if computed is not None:
                    computed.append(
                        (ckpt.label, spec.name) if protocol == "full" else (ckpt.label, spec.name, protocol)
                    )
                results[protocol][spec.name] = dump
    return results


def _result_json(
    ckpt: Checkpoint,
    spec: DatasetSpec,
    spec_opts: Mapping,
    opts: Mapping,
    metrics: dict,
    run_name: str | None,
    context: int,
    fp: str,
    key: str,
    seconds: float,
    prompts: PromptSpec,
) -> dict:
    """CLIP_benchmark's JSON of one (checkpoint, dataset, protocol) + clipf's block."""
    return {
        "dataset": spec.name,
        "model": f"local-dir:{ckpt.source}" if ckpt.export is not None else str(ckpt.source),
        "pretrained": "",
        "task": spec.task,
        "metrics": metrics,
        "language": opts["language"],
        "clipf": {
            "run": run_name,
            "checkpoint": ckpt.label,
            "protocol": prompts.protocol,
            "source": str(Path(ckpt.source).resolve()),
            "checkpoint_sha256": ckpt.sha256,
            **{k: v for k, v in ckpt.info.items() if k != "provenance"},
            "text_context_length": context,
            "prompts": prompts.record(),
            "dataset_root": str(Path(spec.root).resolve()),
            "dataset_fingerprint": fp,
            "cache_key": key,
            "options": {k: spec_opts[k] for k in ("split", "language", "recall_k", "amp", "batch_size")},
            "device": opts["device"],
            "seconds": seconds,
            "time": datetime.datetime.now().isoformat(timespec="seconds"),
            "versions": versions(),
        },
    }


def evaluate_run(
    run: str | os.PathLike,
    checkpoint: str | Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    dataset_root: str | os.PathLike | None = None,
    *,
    world: str | os.PathLike | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    split: str = "test",
    language: str = "en",
    recall_k: Sequence[int] = DEFAULT_RECALL_K,
    amp: bool | None = None,
    device: str | None = None,
    threads: int | None = None,
    annotation_file: str = "",
    label: str | None = None,
    prompts: str | Sequence[str] = "full",
    force: bool = False,
    verbose: bool = False,
):
    """CLIP_benchmark on a run's checkpoint(s); returns the tidy rows (DataFrame, columns as
    :func:`collect`) of every (checkpoint, dataset, protocol) asked for, computed or read back from the
    cache.

    ``checkpoint``: ``"pretrain"``, ``"finetune"``, an export folder or a ``.pt`` path, or a list; None:
    both phases the run has. ``datasets``: CLIP_benchmark names; None: every webdataset set under
    ``dataset_root`` (or ``world``'s ``eval/``). ``prompts``: ``"full"`` | ``"masked"`` or both
    (:mod:`clipf.evaluate.protocols`). ``amp``: None = on CUDA only. ``force``: recompute.
    ``df.attrs["computed"]`` / ``df.attrs["cached"]``: the (checkpoint, dataset) pairs of each kind
    (``(checkpoint, dataset, protocol)`` for a protocol other than ``full``).
    """
    run = Path(run)
    if not run.is_dir():
        raise EvalError(f"{run}: no such run folder")
    protocols = check_protocols(prompts)
    specs = plan_datasets(datasets, dataset_root, world, split, annotation_file)
    if checkpoint is None:
        wanted = [p for p in PHASES if (run / p).is_dir()]
        if not wanted:
            raise EvalError(f"{run}: neither pretrain/ nor finetune/ — nothing to evaluate")
    else:
        wanted = [checkpoint] if isinstance(checkpoint, str | os.PathLike) else list(checkpoint)
    if label is not None and len(wanted) > 1:
        raise EvalError("label= names one checkpoint; pass one checkpoint with it")
    ckpts = [resolve_checkpoint(run, str(c), label) for c in wanted]
    opts = eval_options(batch_size, num_workers, split, language, recall_k, amp, device, threads)
    meta = run_metadata(run)
    rows: list[dict] = []
    computed: list[tuple[str, ...]] = []
    for ckpt in ckpts:
        if not re.fullmatch(r"[\w.+-]+", ckpt.label) or ckpt.label in PROTOCOLS:
            raise EvalError(
                f"checkpoint label {ckpt.label!r}: letters, digits, '_', '-', '.', '+' only, and not a "
                f"protocol name ({', '.join(PROTOCOLS)})"
            )
        results = evaluate_checkpoint(
            ckpt, specs, opts, run, run / "eval" / ckpt.label, force, verbose, run.name, computed, protocols
        )
        for protocol in protocols:
            for spec in specs:
                rows += tidy_rows(run.name, meta, ckpt.label, results[protocol][spec.name], protocol)
    write_summary(run)
    df = tidy_frame(rows)
    pairs = [
        (c.label, s.name) if p == "full" else (c.label, s.name, p)
        for c in ckpts
        for p in protocols
        for s in specs
    ]
    df.attrs["computed"] = computed
    df.attrs["cached"] = [p for p in pairs if p not in computed]
    return df
