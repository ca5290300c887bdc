"""Every replacement clipf makes of a third-party module's global, in one table, and one way to apply them.

clipf wraps open_clip, open_clip_train, CLIP_benchmark and webdataset instead of forking them: for the
length of a run (or an export, or an evaluation) it replaces a few names those packages look up at call
time. :data:`PATCHES` lists each one — the target (module + attribute), what replaces it, why, the
package version it was checked against, the target's signature in that version and the upstream function
whose code looks the name up. :func:`patched` applies a group of them and restores every original on exit,
an exception included; :func:`original` is what a target was before (what a replacement delegates to)::

    with upstream.patched("train", get_tokenizer=run.get_tokenizer, ...):   # the caller's functions
        open_clip_train.main.main(argv)

``tests/test_upstream.py`` fails when an installed package no longer has a target, its signature
differs from the one recorded here, or the function that used it no longer names it: re-check the
replacement against the new upstream code, then update the row (``checked``, ``signature``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import re
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

Build = Callable[[Any, Mapping[str, Any]], Any]  # (original, hooks) -> the replacement


@dataclass(frozen=True)
class Patch:
    """One replaced global: ``target`` (``package.module.attribute``) becomes ``build(original, hooks)``."""

    group: str  # what :func:`patched` applies together: train | text_pos_resize | clip_benchmark_*
    target: str
    replacement: str  # what takes its place, in words
    why: str
    package: str  # the distribution that ships the target
    checked: str  # its version the replacement was checked against
    signatures: Mapping[str, str]  # "" -> the target's signature; "a.b" -> target.a.b's (an overlay's)
    used_by: str  # the upstream function whose code looks the name up
    hooks: tuple[str, ...] = ()  # the caller's values the replacement needs (keyword arguments of patched)
    build: Build = field(default=lambda original, hooks: original, repr=False)

    @property
    def module(self) -> str:
        """The target's module (``open_clip_train.main``)."""
        return self.target.rsplit(".", 1)[0]

    @property
    def attribute(self) -> str:
        """The target's attribute in that module (``get_tokenizer``)."""
        return self.target.rsplit(".", 1)[1]


class Overlay(types.ModuleType):
    """A module seen through some replaced attributes (what one upstream module sees of another)."""

    def __init__(self, module: types.ModuleType, **overrides: Any):
        super().__init__(module.__name__)
        self.__dict__.update(overrides)
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def ddp_without_cpu_device_ids(module: torch.nn.Module, device_ids: Sequence[Any] | None = None, **kw: Any):
    """DistributedDataParallel, without the ``device_ids=[cpu]`` open_clip_train passes on CPU (gloo)."""
    if device_ids and all(torch.device(d).type == "cpu" for d in device_ids):
        device_ids = None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids, **kw)


def _hook(name: str) -> dict[str, Any]:
    """The replacement is the caller's ``name``."""
    return {"hooks": (name,), "build": lambda original, hooks: hooks[name]}


def _torch_view(original: types.ModuleType, hooks: Mapping[str, Any]) -> Overlay:
    nn = Overlay(
        original.nn,
        parallel=Overlay(original.nn.parallel, DistributedDataParallel=ddp_without_cpu_device_ids),
    )
    return Overlay(original, save=hooks["save"], nn=nn)


OC, CB, WDS = "open_clip_torch", "clip_benchmark", "webdataset"
OC_VERSION, CB_VERSION, WDS_VERSION = "3.3.0", "1.6.2", "1.0.2"
_TOK = (
    "(model_name: str = '', context_length: Optional[int] = None, cache_dir: Optional[str] = None, **kwargs)"
)
_CREATE = (
    "(model_name: str, pretrained: Optional[str] = None, load_weights: bool = True, precision: str = 'fp32', "
    "device: Union[str, torch.device] = 'cpu', jit: bool = False, force_quick_gelu: bool = False, "
    "force_custom_text: bool = False, force_patch_dropout: Optional[float] = None, force_image_size: "
    "Union[int, Tuple[int, int], NoneType] = None, force_context_length: Optional[int] = None, image_mean: "
    "Optional[Tuple[float, ...]] = None, image_std: Optional[Tuple[float, ...]] = None, image_interpolation: "
    "Optional[str] = None, image_resize_mode: Optional[str] = None, aug_cfg: Union[Dict[str, Any], "
    "open_clip.transform.AugmentationCfg, NoneType] = None, pretrained_image: bool = False, pretrained_text: "
    "bool = True, pretrained_image_path: Optional[str] = None, pretrained_text_path: Optional[str] = None, "
    "cache_dir: Optional[str] = None, output_dict: Optional[bool] = None, weights_only: bool = True, "
    "**model_kwargs)"
)
_EXPANDER = (
    "(data: Iterable[Dict[str, Any]], handler: Callable[[Exception], bool] = <function reraise_exception>, "
    "select_files: Optional[Callable[[str], bool]] = None, rename_files: Optional[Callable[[str], str]] = "
    "None, eof_value: Optional[Any] = {}) -> Iterator[Dict[str, Any]]"
)
_SAVE = (
    "(obj: object, f: Union[str, os.PathLike[str], IO[bytes]], pickle_module: Any = <module 'pickle'>, "
    "pickle_protocol: int = 2, _use_new_zipfile_serialization: bool = True, _disable_byteorder_record: "
    "bool = False) -> None"
)
_DDP = (
    "(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=None, init_sync=True, "
    "process_group=None, bucket_cap_mb=None, find_unused_parameters=False, check_reduction=False, "
    "gradient_as_bucket_view=False, static_graph=False, delay_all_reduce_named_params=None, "
    "param_to_hook_all_reduce=None, mixed_precision: torch.nn.parallel.distributed._MixedPrecision | None = "
    "None, device_mesh=None, skip_all_reduce_unused_params=False, bucket_cap_mb_list: list[int] | None = None, "
    "batched_grad_copy=False, forward_sync_buffers: bool | None = None, lazy_bucket_allocation=False)"
)
_TQDM = (
    "(self, iterable=None, desc=None, total=None, leave=True, file=None, ncols=None, mininterval=0.1, "
    "maxinterval=10.0, miniters=None, ascii=None, disable=False, unit='it', unit_scale=False, "
    "dynamic_ncols=False, smoothing=0.3, bar_format=None, initial=0, position=None, postfix=None, "
    "unit_divisor=1000, write_bytes=False, lock_args=None, nrows=None, colour=None, delay=0.0, gui=False, "
    "**kwargs)"
)

PATCHES: tuple[Patch, ...] = (
    # ---- group "train": one open_clip_train.main.main call (hooks: clipf.engine.Run.hooks())
    Patch(
        group="train",
        target="open_clip_train.main.get_tokenizer",
        replacement="Run.get_tokenizer: open_clip's tokenizer at the full N tokens",
        why="open_clip_train builds the zero-shot classifier (and val text) at --force-context-length K, "
        "which cuts prompts and class names; evaluation text is always at N",
        package=OC, checked=OC_VERSION, signatures={"": _TOK}, used_by="open_clip_train.main.main",
        **_hook("get_tokenizer"),
    ),
    Patch(
        group="train",
        target="open_clip_train.main.create_model_and_transforms",
        replacement="Run.create_model_and_transforms: the stock one under clipf.export.text_pos_resize "
        "(an objective may build its own model: UTA's student)",
        why="a K-token --pretrained checkpoint loaded at N extends its position rows by --pos-extend",
        package=OC, checked=OC_VERSION, signatures={"": _CREATE}, used_by="open_clip_train.main.main",
        **_hook("create_model_and_transforms"),
    ),
    Patch(
        group="train",
        target="open_clip_train.main.create_loss",
        replacement="Run.create_loss: the stock loss (or the objective's) inside a LossMeter",
        why="the epoch's mean loss for metrics.json, without a host sync per step",
        package=OC, checked=OC_VERSION, signatures={"": "(args)"}, used_by="open_clip_train.main.main",
        **_hook("create_loss"),
    ),
    Patch(
        group="train",
        target="open_clip_train.main.get_data",
        replacement="Run.get_data: the stock datasets, the train split with clipf's masking tokenizer",
        why="text masking is the train split's tokenizer (val stays at N); the train loader is counted; "
        "the shuffle gets its seed; --lr-warmup-epochs becomes steps",
        package=OC, checked=OC_VERSION, signatures={"": "(args, preprocess_fns, epoch=0, tokenizer=None)"},
        used_by="open_clip_train.main.main", **_hook("get_data"),
    ),
    Patch(
        group="train",
        target="open_clip_train.main.train_one_epoch",
        replacement="Run.train_one_epoch: the stock loop, timed and recorded",
        why="metrics.json per epoch (loss, samples/s, tokens seen, skipped records); the schedule's epoch",
        package=OC, checked=OC_VERSION,
        signatures={"": "(model, data, loss, epoch, optimizer, scaler, scheduler, dist_model, args, tb_writer=None)"},
        used_by="open_clip_train.main.main", **_hook("train_one_epoch"),
    ),
    Patch(
        group="train",
        target="open_clip_train.main.evaluate",
        replacement="Run.evaluate: the stock one, on a copy of the model extended to N text tokens",
        why="a K-token tower is evaluated at N (its position rows extended); val metrics go to metrics.json",
        package=OC, checked=OC_VERSION, signatures={"": "(model, data, epoch, args, tb_writer=None, tokenizer=None)"},
        used_by="open_clip_train.main.main", **_hook("evaluate"),
    ),
    Patch(
        group="train",
        target="open_clip_train.main.torch",
        replacement="torch through an Overlay: save = the caller's save (Run.save_checkpoint: the run's "
        "identity added, then clipf.files.atomic_save), "
        "nn.parallel.DistributedDataParallel = ddp_without_cpu_device_ids",
        why="a kill during a checkpoint write never leaves a corrupt epoch_N.pt; open_clip_train passes "
        "device_ids=[cpu] to DDP on CPU, which gloo rejects",
        package="torch", checked="2.15.0",
        signatures={"save": _SAVE, "nn.parallel.DistributedDataParallel": _DDP},
        used_by="open_clip_train.main.main", hooks=("save",), build=_torch_view,
    ),
    Patch(
        group="train",
        target="open_clip_train.main.get_latest_checkpoint",
        replacement="Run.latest_checkpoint: the checkpoint clipf chose before the run (the newest epoch_N.pt or "
        "step_E_B.pt that loads, its identity checked)",
        why="--resume latest must also see step checkpoints (open_clip_train sorts file names: step_* after "
        "epoch_*, whatever their position), skip a damaged newest file and refuse another run's checkpoint",
        package=OC, checked=OC_VERSION, signatures={"": "(path: str, remote: bool)"},
        used_by="open_clip_train.main.main", **_hook("get_latest_checkpoint"),
    ),
    Patch(
        group="train",
        target="open_clip_train.data.wds",
        replacement="webdataset through an Overlay: shuffle = the caller's seeded shuffle",
        why="stock wds.shuffle seeds from the pid and the clock (same --seed, other weights); clipf's "
        "order is a function of (seed, rank, data worker, epoch)",
        package=WDS, checked=WDS_VERSION,
        signatures={"shuffle": "(data, bufsize=1000, initial=100, rng=None, seed=None, handler=None)"},
        used_by="open_clip_train.data.get_wds_dataset", hooks=("shuffle",),
        build=lambda original, hooks: Overlay(original, shuffle=hooks["shuffle"]),
    ),
    Patch(
        group="train",
        target="open_clip_train.data.log_and_continue",
        replacement="the caller's handler: log, count, continue",
        why="a corrupt record is skipped and counted (metrics.json 'skipped'), not only logged",
        package=OC, checked=OC_VERSION, signatures={"": "(exn)"},
        used_by="open_clip_train.data.get_wds_dataset", **_hook("handler"),
    ),
    Patch(
        group="train",
        target="open_clip_train.data.filter_no_caption_or_no_image",
        replacement="the caller's filter: the stock one (upstream.original), counting what it drops",
        why="samples without an image or a caption are counted like corrupt records",
        package=OC, checked=OC_VERSION, signatures={"": "(sample)"},
        used_by="open_clip_train.data.get_wds_dataset", **_hook("filter"),
    ),
    Patch(
        group="train",
        target="open_clip_train.data.tarfile_to_samples_nothrow",
        replacement="the stock one with handler = the caller's handler",
        why="records of unreadable shards are counted too",
        package=OC, checked=OC_VERSION, signatures={"": "(src, handler=<function log_and_continue>)"},
        used_by="open_clip_train.data.get_wds_dataset", hooks=("handler",),
        build=lambda original, hooks: functools.partial(original, handler=hooks["handler"]),
    ),
    Patch(
        group="train",
        target="open_clip_train.data.tar_file_expander",
        replacement="webdataset's tar_file_expander with eof_value=None",
        why="open_clip_train 3.3's group_by_keys_nothrow cannot read the end-of-shard markers that "
        "webdataset >= 1.0 emits by default",
        package=WDS, checked=WDS_VERSION, signatures={"": _EXPANDER},
        used_by="open_clip_train.data.tarfile_to_samples_nothrow",
        build=lambda original, hooks: functools.partial(original, eof_value=None),
    ),
    # ---- group "text_pos_resize": clipf.export.text_pos_resize, a K-token checkpoint loaded at N tokens
    Patch(
        group="text_pos_resize",
        target="open_clip.factory.resize_text_pos_embed",
        replacement="the caller's resize (clipf.export: --pos-extend repeat; the stock one for equal lengths)",
        why="open_clip linearly interpolates a shorter text position table; clipf keeps the K trained rows",
        package=OC, checked=OC_VERSION,
        signatures={"": "(state_dict, model, interpolation: str = 'linear', antialias: bool = False)"},
        used_by="open_clip.factory.load_checkpoint", **_hook("resize_text_pos_embed"),
    ),
    # ---- groups "clip_benchmark_offline" / "clip_benchmark_quiet": clipf.evaluate
    Patch(
        group="clip_benchmark_offline",
        target="clip_benchmark.datasets.builder.call",
        replacement="the caller's download guard (clipf.evaluate: refuses; reports kaggle / gdown missing)",
        why="CLIP_benchmark shells out to download missing datasets; clipf eval never downloads",
        package=CB, checked=CB_VERSION, signatures={"": "(*popenargs, timeout=None, **kwargs)"},
        used_by="clip_benchmark.datasets.builder.has_kaggle", **_hook("download"),
    ),
    *(
        Patch(
            group="clip_benchmark_quiet",
            target=f"clip_benchmark.metrics.{module}.tqdm",
            replacement="tqdm with disable=True",
            why="no progress bars in clipf eval's output unless --verbose",
            package="tqdm", checked="4.70.1", signatures={"": _TQDM},
            used_by=f"clip_benchmark.metrics.{module}.{user}",
            build=lambda original, hooks: functools.partial(original, disable=True),
        )
        for module, user in (
            ("zeroshot_classification", "run_classification"),
            ("zeroshot_retrieval", "evaluate"),
            ("image_caption_selection", "evaluate"),
        )
    ),
)  # fmt: skip

GROUPS = tuple(dict.fromkeys(p.group for p in PATCHES))
_saved: dict[str, list[Any]] = {}  # target -> the values patched over, outermost first


def resolve(dotted: str) -> Any:
    """The object a dotted name points to: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(f"no module in {dotted!r}")


def signature(obj: Any) -> str:
    """``inspect.signature`` as recorded in :data:`PATCHES`: a class by its ``__init__``, without memory
    addresses or file paths (``<function f>``, ``<module 'm'>``)."""
    sig = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
    text = re.sub(r" at 0x[0-9a-fA-F]+>", ">", str(sig))
    return re.sub(r"(<module '[^']+') from '[^']*'>", r"\1>", text)


def original(target: str) -> Any:
    """What ``target`` was before :func:`patched` replaced it (its current value when not patched)."""
    stack = _saved.get(target)
    if stack:
        return stack[0]
    module, _, attr = target.rpartition(".")
    return getattr(importlib.import_module(module), attr)


@contextlib.contextmanager
def patched(*groups: str, **hooks: Any) -> Iterator[None]:
    """Apply every patch of ``groups`` (``hooks``: the caller's values they need, see :attr:`Patch.hooks`);
    on exit — an exception included — put every original back, last applied first."""
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown patch group(s) {unknown}; known: {', '.join(GROUPS)}")
    chosen = [p for p in PATCHES if p.group in groups]
    needed = {h for p in chosen for h in p.hooks}
    if needed != set(hooks):
        raise TypeError(
            f"patched({', '.join(groups)}): missing hooks {sorted(needed - set(hooks))}, "
            f"unexpected {sorted(set(hooks) - needed)}"
        )
    applied: list[tuple[Patch, Any, Any]] = []
    try:
        for p in chosen:
            module = importlib.import_module(p.module)
            before = getattr(module, p.attribute)
            setattr(module, p.attribute, p.build(before, hooks))
            applied.append((p, module, before))
            _saved.setdefault(p.target, []).append(before)
        yield
    finally:
        for p, module, before in reversed(applied):
            setattr(module, p.attribute, before)
            stack = _saved[p.target]
            stack.pop()
            if not stack:
                del _saved[p.target]
