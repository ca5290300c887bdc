"""UTA — unmasked token alignment to a frozen CLIP teacher (Liu et al., TMLR 2024).

Instead of masking caption words, a ViT *student* is trained on the unmasked patches of each image only
and every token it outputs is aligned to the token at the same grid position of a frozen CLIP vision
encoder (the *teacher*), which sees the whole image. The student's pooled, projected output is aligned to
the teacher's image embedding. The student lands in the teacher's embedding space, so with the teacher's
text tower beside it it is a CLIP model, zero-shot evaluable without ever seeing a caption::

    clipf train --objective uta --teacher runs/truncate-k32-m0-s0 --model clipf-vit-tiny \\
        --train-data "data/world/train/{00000..00003}.tar" --dataset-type webdataset \\
        --batch-size 64 --epochs 3 --lr 1e-3 --logs-dir runs --name uta-m50-s0/pretrain
    torchrun --nproc_per_node=4 -m clipf.train --objective uta --teacher ViT-B-16 \\
        --teacher-pretrained laion2b_s34b_b88k --model ViT-B-16 --precision amp_bf16 ...

Everything else is the engine's (:mod:`clipf.engine`, run by :mod:`clipf.train`): data, ``--resume latest``, DDP / SLURM,
``--precision``, TensorBoard, ``metrics.json``, ``clipf.json``, atomic checkpoints. ``--model`` names the
*student's* architecture (its ``vision_cfg`` is used); UTA adds:

``--teacher SPEC``               a ``local-dir:`` export (or its folder), a clipf run (``RUN``: its
                                 ``finetune/export``, else ``pretrain/export``, else the last
                                 checkpoint; ``RUN/<phase>``: its ``export/`` or last checkpoint), a clipf
                                 checkpoint ``epoch_N.pt`` (the run's ``clipf.json`` names the
                                 architecture), ``hf-hub:ORG/REPO``, or an open_clip model name with
``--teacher-pretrained TAG|PATH`` its weights (open_clip's pretrained tag or a file)
``--teacher-precision P``        auto (bf16 on GPU, fp32 on CPU) | bf16 | fp16 | fp32
``--uta-mask-ratio F``           share of patches the student does not see, in (0, 1); default 0.5
``--uta-masker NAME``            random | block (BEiT block-wise) | reversed_block (default, the paper's:
                                 the student keeps what block-wise masking would drop)
``--uta-head linear|mlp``        student token -> teacher token width (default linear)
``--uta-token-weight W``, ``--uta-global-weight W``  loss weights (default 1, 1)

The objective. ``loss = w_tok * mean_i(1 - cos(head(s_i), t_i)) + w_glob * (1 - cos(s_img, t_img))`` over
the kept patch positions ``i``: ``s_i`` are the student's final tokens (after ``ln_post``) of the kept
patches, ``t_i`` the teacher's final tokens (after its ``ln_post``) at the same grid positions, ``s_img``
the student's projected pooled output and ``t_img`` the teacher's image embedding. No mask tokens: the
kept patch embeddings are gathered after the positional embedding, exactly where open_clip's
``PatchDropout`` gathers (:class:`KeepPatches` takes its place in the student), so a step costs the
student ``(1 - ratio)`` of its tokens plus one no-grad teacher forward. open_clip_train logs both terms
(``Token_loss``, ``Global_loss``; TensorBoard ``train/token_loss``, ``train/global_loss``); ``metrics.json``
gets their epoch means and, with ``--val-data``, the UTA loss on the validation images (fixed masks) as
``val/uta_loss`` beside open_clip_train's own val metrics (student image x teacher text).

The model. The student is an open_clip CLIP built from the *teacher's* config with the student's
``vision_cfg`` (so ``embed_dim``, ``quick_gelu`` and the text tower are the teacher's): its vision tower
is trained from scratch, its text tower and logit scale are the teacher's, frozen. Images are
preprocessed with the teacher's mean / std / interpolation; the student's image size and patch grid must
equal the teacher's (token i of one is token i of the other; no interpolation: an error names both
grids). The teacher itself is held outside the module tree — not in checkpoints, the optimizer or DDP —
frozen, in eval mode, run under ``torch.no_grad`` (bf16 on GPU by default); ``--resume`` loads it again
from ``--teacher``.

Export. ``RUN/export/`` (end of training; ``clipf uta export CKPT`` for any checkpoint) is an
open_clip ``local-dir:`` model — the student's vision tower, the teacher's text tower and logit scale —
that stock open_clip / CLIP_benchmark / ``clipf eval`` load with no contrastive step. A short contrastive
fine-tune starts from it like any open_clip model::

    clipf train --model local-dir:RUN/export --pretrained RUN/export/open_clip_model.safetensors --finetune ...

The package: :mod:`~clipf.objectives.uta.masks` (the patch maskers, :data:`PATCH_MASKERS`, registered
by name like the text maskers of :mod:`clipf.masking`), :mod:`~clipf.objectives.uta.model` (teacher,
student, :class:`UTAModel`, :class:`UTALoss`), :mod:`~clipf.objectives.uta.run` (:class:`UTAPlan`,
:class:`UTARun`, :func:`export`, and :data:`UTA`, the objective :mod:`clipf.objectives` registers as
``uta``), :mod:`~clipf.objectives.uta.compute` (FLOP counts, :func:`match_compute`) and
:mod:`~clipf.objectives.uta.cli` (``clipf uta ...``; not imported here). This module re-exports the
public names of the first four.

In the study (``params.yaml`` ``uta:``, ``dvc.yaml`` stages ``uta``, ``uta_finetune``, ``uta_eval``,
``uta_finetune_eval``, ``uta_report``): one student per seed, ``runs/uta-s<seed>``, taught by the seed's
unmasked CLIP baseline cell (its ``pretrain/export``), trained for the epochs that give it the training
FLOPs of that CLIP baseline (:func:`match_compute`, :data:`MATCH_RULE`), evaluated like every cell, and
reported beside its teacher and CLIP from scratch (:func:`clipf.report.uta.write_report`: ``results/uta.csv``,
``figures/uta/``). ``clipf uta eval|report`` are those stages (:func:`clipf.study.uta_eval`,
:mod:`clipf.report.uta`); ``notebooks/06_uta.ipynb`` the training one (:func:`clipf.study.uta_run`).
"""

from clipf.objectives.uta.compute import (
    MATCH_RULE,
    clip_flops_per_sample,
    match_compute,
    phase_compute,
    teacher_config,
    uta_flops_per_sample,
)
from clipf.objectives.uta.masks import (
    ALIASES,
    DEFAULT_MASKER,
    DEFAULT_RATIO,
    PATCH_MASKERS,
    PatchMaskerFn,
    block,
    block_mask,
    check_ratio,
    get_masker,
    keep_to_mask,
    kept_count,
    mask_probability,
    mask_probability_maps,
    random,
    register,
    reversed_block,
)
from clipf.objectives.uta.model import (
    HEADS,
    KeepPatches,
    Teacher,
    UTALoss,
    UTAModel,
    build_student,
    image_grid,
    make_head,
    resolve_teacher,
    student_config,
    validation_loss,
)
from clipf.objectives.uta.run import (
    TEACHER_PRECISIONS,
    UTA,
    UTAObjective,
    UTAPlan,
    UTARun,
    export,
    uta_parser,
)

__all__ = [
    "ALIASES",
    "DEFAULT_MASKER",
    "DEFAULT_RATIO",
    "HEADS",
    "MATCH_RULE",
    "PATCH_MASKERS",
    "TEACHER_PRECISIONS",
    "UTA",
    "KeepPatches",
    "PatchMaskerFn",
    "Teacher",
    "UTALoss",
    "UTAModel",
    "UTAObjective",
    "UTAPlan",
    "UTARun",
    "block",
    "block_mask",
    "build_student",
    "check_ratio",
    "clip_flops_per_sample",
    "export",
    "get_masker",
    "image_grid",
    "keep_to_mask",
    "kept_count",
    "make_head",
    "mask_probability",
    "mask_probability_maps",
    "match_compute",
    "phase_compute",
    "random",
    "register",
    "resolve_teacher",
    "reversed_block",
    "student_config",
    "teacher_config",
    "uta_flops_per_sample",
    "uta_parser",
    "validation_loss",
]
