"""CLIP_benchmark on a run's exported models, and the tidy results table.

``clipf eval RUN`` runs CLIP_benchmark's own code — its dataset builder (``build_dataset``), model loader
(``load_clip``), zero-shot classifier and retrieval metrics — on ``RUN/<phase>/export`` (an open_clip
``local-dir:`` model written by :mod:`clipf.export`, text tower at the full 32-token context: under the
default protocol evaluation text is never masked nor cut). The model is loaded once per checkpoint and every dataset is evaluated with
it; each result is CLIP_benchmark's own JSON (``dataset, model, pretrained, task, metrics, language``)
plus a ``clipf`` block (weights hash, dataset fingerprint, options, versions)::

    RUN/eval/<checkpoint>/<dataset>.json          one (checkpoint, dataset), full prompts; "/" in names -> "_"
    RUN/eval/<checkpoint>/masked/<dataset>.json   the same under the masked protocol (``--prompts masked``)
    RUN/eval/summary.json                         {checkpoint: {dataset: {metric: value}}} of pretrain /
                                                  finetune (full), + {"masked": {checkpoint: ...}} (headline
                                                  numbers for ``dvc metrics show``; no NaN)

Two zero-shot protocols (``--prompts full|masked``, or both; :mod:`~clipf.evaluate.protocols`): ``full``
(default) encodes the class prompts and retrieval captions with the export's own tokenizer at 32 tokens
(the K trained position rows extended); ``masked`` is the authors' in-training protocol: the texts go
through the checkpoint's own training masker (masker, K, frequency table, t, rule, mask options, read from
its phase's ``clipf.json``) and are zero-padded to the export's 32 positions, which under ``--pos-extend
repeat`` encodes them exactly as the K-token tower as trained. A phase trained without a masker (the
fine-tune, the CLIP baseline, a UTA student) has nothing to mask with: ``masked`` is ``full`` there (a
printed note; computed once, written for both). Results written before protocols existed are ``full``.

``<checkpoint>`` is ``pretrain`` / ``finetune`` (the paper's two columns: after masked pre-training, after
the unmasked fine-tune), ``<phase>-epoch_N`` for ``--checkpoint RUN/<phase>/checkpoints/epoch_N.pt``
(exported to a temporary folder with :func:`clipf.export.export` first), or ``--label``.

Cached and resumable: a result whose key — sha256 of the export's weights and model/preprocess config, the
dataset's fingerprint (file names and sizes, and contents up to 256 MiB, else modification times), task,
split, language, recall@k, amp, CLIP_benchmark's version and, for masked prompts, the masker, K, its
options, the frequency table's sha256 and the seed — matches the JSON on disk is read back, not
recomputed; new weights or a changed dataset recompute. Every file is written to a temporary name and
``os.replace``-d, so an interrupted evaluation leaves whole results or none.

Datasets. With no ``--datasets``, every evaluation set under ``--dataset-root`` (or ``--world DIR``: its
``eval/``) in CLIP_benchmark's webdataset layout is found and evaluated as ``wds/<name>``: classification
sets (``classnames.txt``, ``zeroshot_classification_templates.txt``, ``test/{0..}.tar`` with ``.cls``,
``test/nshards.txt``) and retrieval sets (``dataset_type.txt`` = ``retrieval``, ``.txt`` captions, one a
line). Any other CLIP_benchmark dataset (``imagenet1k``, ``cifar10``, ``cifar100``, ``mscoco_captions``,
``flickr30k``, ...) is read from ``--dataset-root`` as CLIP_benchmark's CLI reads ``--dataset_root``: a
folder, or a template with ``{dataset}`` / ``{dataset_cleaned}``; with a plain folder, a webdataset set is
looked for in ``ROOT/<name>`` first, then ``ROOT``, any other set in ``ROOT`` first, then ``ROOT/<name>``
(so one root serves ``imagenet1k`` beside ``cifar10``). clipf never downloads: a missing or incomplete set is an error
naming the dataset, the folder and the layout expected, before any model is loaded.

Stock CLIP_benchmark reads the same exports and sets with nothing from clipf installed (``--no_amp`` on
CPU, where CLIP_benchmark's default autocast would run in bfloat16; retrieval sets need ``--task
zeroshot_retrieval``, as ``--task auto`` only knows CLIP_benchmark's own retrieval names; ``--num_workers``
at most the set's shard count, as webdataset fails a DataLoader worker that gets no shard — clipf eval
caps it so)::

    clip_benchmark eval --model_type open_clip --model local-dir:runs/<cell>/pretrain/export \\
        --pretrained '' --dataset wds/<name> --dataset_root data/world/eval/<name> \\
        --task zeroshot_classification --batch_size 64 --num_workers 0 --no_amp \\
        --output 'stock-{dataset}.json'

(``--dataset_root 'data/world/eval/{dataset}'`` serves several ``--dataset wds/...`` at once; for the
retrieval set ``--task zeroshot_retrieval --recall_k 1 5 10``. Keep its output out of ``RUN/eval/``: that
folder is clipf's, and ``collect`` reads every JSON in it.)

``clipf eval collect [--runs runs] [--out runs/results.csv]`` gathers every result JSON of every run into one
tidy table (CSV and Parquet beside it), one row per number:

    run, objective, masker, text_tokens, image_mask, seed, epochs, checkpoint, protocol, dataset, task,
    metric, value, model, freq_threshold, freq_rule, finetune_epochs, weights_sha256

with the run's settings from ``RUN/pretrain/clipf.json`` (the pre-training objective — ``clip``,
``siglip`` or ``uta`` (:mod:`clipf.uta`: text tower from a frozen teacher, ``image_mask`` is its patch
mask ratio) —, the cell: masker, K text tokens, FLIP image-mask ratio, seed, pre-training epochs, the
frequency masker's t and rule — ``clamped`` for a run recorded before ``--freq-rule`` existed) and
``RUN/finetune/clipf.json`` (fine-tune epochs). NaN metrics (acc5 of a
set with fewer than 5 classes) are left out.

Python: :func:`evaluate_run` (-> tidy DataFrame of what it evaluated or read back; ``df.attrs["computed"]``
/ ``["cached"]`` list the (checkpoint, dataset) pairs), :func:`evaluate_model` (one ``local-dir`` export,
no run), :func:`collect`, :func:`discover`.

Modules: :mod:`~clipf.evaluate.base` (EvalError, columns, hashing), :mod:`~clipf.evaluate.datasets`
(finding and checking the sets), :mod:`~clipf.evaluate.checkpoints` (what is evaluated),
:mod:`~clipf.evaluate.protocols` (the prompt protocols), :mod:`~clipf.evaluate.benchmark` (running
CLIP_benchmark; :func:`prompt_tokenizer` is where the text side's encoding is chosen),
:mod:`~clipf.evaluate.collect` (the tidy table), :mod:`~clipf.evaluate.cli`.
"""

from __future__ import annotations

from clipf.evaluate.base import (
    COLUMNS,
    DEFAULT_RECALL_K,
    EXTRA_COLUMNS,
    PHASES,
    SUMMARY_NAME,
    TASKS,
    EvalError,
    file_sha256,
    slug,
)
from clipf.evaluate.benchmark import (
    cache_key,
    evaluate_checkpoint,
    evaluate_model,
    evaluate_run,
    prompt_specs,
    prompt_tokenizer,
    recall_ks,
)
from clipf.evaluate.checkpoints import Checkpoint, check_export, exported, resolve_checkpoint
from clipf.evaluate.cli import cli
from clipf.evaluate.collect import (
    collect,
    find_runs,
    read_results,
    result_files,
    run_metadata,
    tidy_rows,
    write_summary,
)
from clipf.evaluate.datasets import LAYOUTS, DatasetSpec, check_dataset, discover, fingerprint, world_root
from clipf.evaluate.protocols import (
    DEFAULT_PROTOCOL,
    PROTOCOLS,
    PaddedTokenizer,
    PromptSpec,
    check_protocols,
    masked_tokenizer,
    prompt_spec,
    trained_rule,
)

__all__ = [
    "COLUMNS",
    "DEFAULT_PROTOCOL",
    "DEFAULT_RECALL_K",
    "EXTRA_COLUMNS",
    "LAYOUTS",
    "PHASES",
    "PROTOCOLS",
    "SUMMARY_NAME",
    "TASKS",
    "Checkpoint",
    "DatasetSpec",
    "EvalError",
    "PaddedTokenizer",
    "PromptSpec",
    "cache_key",
    "check_dataset",
    "check_export",
    "check_protocols",
    "cli",
    "collect",
    "discover",
    "evaluate_checkpoint",
    "evaluate_model",
    "evaluate_run",
    "exported",
    "file_sha256",
    "find_runs",
    "fingerprint",
    "masked_tokenizer",
    "prompt_spec",
    "prompt_specs",
    "prompt_tokenizer",
    "read_results",
    "result_files",
    "recall_ks",
    "resolve_checkpoint",
    "run_metadata",
    "slug",
    "tidy_rows",
    "trained_rule",
    "world_root",
    "write_summary",
]
