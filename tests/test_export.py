"""clipf.export: K-row text positional tables reach the full context; local-dir: exports load in open_clip."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import open_clip
import pytest
import torch
from open_clip.model import resize_text_pos_embed

from clipf import export as E
from clipf import files, models

torch.set_num_threads(1)
models.register()
MODEL = "clipf-vit-micro"
SHORT, LONG = (
    "a red dog",
    "a photo of a small red dog on the beach near the old house under a tall green tree",
)


@pytest.fixture(scope="module")
def k6(tmp_path_factory):
    """A random 6-token-text checkpoint as open_clip_train writes it (module. prefix, epoch, optimizer)."""
    torch.manual_seed(0)
    net = open_clip.create_model(MODEL, force_context_length=6)
    run = tmp_path_factory.mktemp("run") / "pretrain"
    (run / "checkpoints").mkdir(parents=True)
    path = run / "checkpoints" / "epoch_1.pt"
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"epoch": 1, "name": "x", "state_dict": sd, "optimizer": {}}, path)
    (run / "clipf.json").write_text(json.dumps({"model": MODEL, "pos_extend": "repeat"}))
    return net.eval(), path


def test_extend_positions():
    pos = torch.randn(6, 64)
    rep = E.extend_positions(pos, 32, "repeat")
    assert (
        rep.shape == (32, 64) and torch.equal(rep[:6], pos) and torch.equal(rep[6:], pos[-1:].expand(26, 64))
    )
    interp = E.extend_positions(pos, 32, "interpolate")
    sd = {"positional_embedding": pos.clone()}
    resize_text_pos_embed(sd, open_clip.create_model(MODEL))  # open_clip's own, to 32
    assert torch.allclose(interp, sd["positional_embedding"])
    assert torch.equal(E.extend_positions(pos, 4, "repeat"), pos[:4]) and E.extend_positions(pos, 6) is pos
    with pytest.raises(ValueError, match="pos_extend"):
        E.extend_positions(pos, 32, "zeros")


def test_extend_context_keeps_short_texts(k6):
    net, _ = k6
    tok6, tok32 = open_clip.get_tokenizer(MODEL, context_length=6), open_clip.get_tokenizer(MODEL)
    with torch.no_grad():
        before = net.encode_text(tok6([SHORT]))
        wide = E.extend_context(__import__("copy").deepcopy(net), 32, "repeat")
        assert E.text_context(wide) == 32 and wide.attn_mask.shape == (32, 32) and E.text_context(net) == 6
        after = wide.encode_text(tok32([SHORT, LONG]))
    # causal attention + features read at the end token: a text that fits in K encodes exactly as before
    assert torch.allclose(before[0], after[0], atol=1e-6) and after.shape == (2, 64)


def test_text_pos_resize_on_load(k6):
    _, path = k6
    rows = torch.load(path, weights_only=True)["state_dict"]["module.positional_embedding"]
    with E.text_pos_resize("repeat"):
        net = open_clip.create_model(MODEL, pretrained=str(path), force_context_length=32)
    pos = net.positional_embedding.detach()
    assert torch.equal(pos[:6], rows) and torch.equal(pos[6:], rows[-1:].expand(26, -1))
    net = open_clip.create_model(MODEL, pretrained=str(path), force_context_length=32)
    assert not torch.equal(net.positional_embedding.detach()[:6], rows)  # open_clip's interpolation again


CHECK = r"""
import json, sys, open_clip, torch
texts = [sys.argv[2], sys.argv[3]]
out = {}
for name, d in json.loads(sys.argv[1]).items():
    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + d)
    tok = open_clip.get_tokenizer("local-dir:" + d)
    ids = tok(texts)
    with torch.no_grad():
        feats = model.encode_text(ids)
        img = model.encode_image(preprocess(__import__("PIL.Image").Image.new("RGB", (50, 40)))[None])
    out[name] = {"shape": list(ids.shape), "feats": feats.tolist(), "img": list(img.shape)}
assert not [m for m in sys.modules if m.startswith("clipf")]
print(json.dumps(out))
"""


def test_export_at_k_and_32_loads_with_open_clip_only(k6, tmp_path):
    net, path = k6
    dirs = {
        "k": E.export(path, MODEL, tmp_path / "k", "trained"),
        "repeat": E.export(path, MODEL, tmp_path / "repeat", 32, "repeat"),
        "interpolate": E.export(path, MODEL, tmp_path / "interpolate", 32, "interpolate"),
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", CHECK, json.dumps({k: str(v) for k, v in dirs.items()}), SHORT, LONG],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert [out[m]["shape"] for m in dirs] == [[2, 6], [2, 32], [2, 32]]
    assert all(o["img"] == [1, 64] for o in out.values())
    with torch.no_grad():
        ref = net.encode_text(open_clip.get_tokenizer(MODEL, context_length=6)([SHORT]))[0].numpy()
    short = {m: np.array(out[m]["feats"][0]) for m in dirs}
    assert np.allclose(short["k"], ref, atol=1e-5) and np.allclose(short["repeat"], ref, atol=1e-5)
    assert not np.allclose(short["interpolate"], ref, atol=1e-3)
    cfg = json.loads((dirs["repeat"] / E.CONFIG_NAME).read_text())
    assert cfg["model_cfg"]["text_cfg"]["context_length"] == 32 and cfg["preprocess_cfg"]["size"] == [32, 32]
    assert cfg["clipf"]["trained_context_length"] == 6 and cfg["clipf"]["pos_extend"] == "repeat"
    assert cfg["model_cfg"]["vision_cfg"]["patch_dropout"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interpolate", "k", "repeat"]  # no temp folders


def test_export_cli(k6, tmp_path):
    from clipf.cli import main as clipf_main

    _, path = k6
    assert clipf_main(["export", str(path), "--out", str(tmp_path / "e"), "--pos-extend", "interpolate"]) == 0
    meta = json.loads((tmp_path / "e" / E.CONFIG_NAME).read_text())["clipf"]
    assert (meta["model"], meta["context_length"], meta["pos_extend"]) == (MODEL, 32, "interpolate")
    assert clipf_main(["export", str(path), "--out", str(tmp_path / "k"), "--context-length", "trained"]) == 0
    assert (
        json.loads((tmp_path / "k" / E.CONFIG_NAME).read_text())["model_cfg"]["text_cfg"]["context_length"]
        == 6
    )
    assert clipf_main(["export", str(path)]) == 0  # model from clipf.json, out = RUN/<phase>/export
    assert (path.parent.parent / "export" / E.WEIGHTS_NAME).is_file()


def test_export_bad_input(k6, tmp_path, capsys):
    from clipf.cli import main as clipf_main

    _, path = k6
    assert clipf_main(["export", str(tmp_path / "nope.pt"), "--model", MODEL]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert clipf_main(["export", str(path), "--model", "clipf-vit-tiny", "--out", str(tmp_path / "x")]) == 2
    assert "size mismatch" in capsys.readouterr().err and not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        clipf_main(["export", str(path), "--pos-extend", "zeros"])


def test_export_of_a_local_dir_model_holds_the_checkpoint(k6, tmp_path):
    """A run whose --model is a local-dir: export (a fine-tune started from an export): its export holds
    the checkpoint's weights, not the folder's own (open_clip's create_model ignores `pretrained` there)."""
    from safetensors.torch import load_file

    _, path = k6
    start = E.export(path, MODEL, tmp_path / "start")  # the folder a fine-tune starts from
    sd = {k: v.clone() for k, v in load_file(str(start / E.WEIGHTS_NAME)).items()}
    sd["visual.conv1.weight"] += 1.0  # "fine-tuned"
    ckpt = tmp_path / "epoch_1.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, ckpt)
    out = E.export(ckpt, f"local-dir:{start}", tmp_path / "out")
    weights = load_file(str(out / E.WEIGHTS_NAME))
    assert torch.equal(weights["visual.conv1.weight"], sd["visual.conv1.weight"])
    assert (
        set(weights) == set(sd)
        and json.loads((out / E.CONFIG_NAME).read_text())["clipf"]["context_length"] == 32
    )


def test_atomic_dir_replaces_only_on_success(tmp_path):
    out = tmp_path / "export"
    with files.atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("first")
        assert not out.exists()  # nothing visible while it is written
    assert (out / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError), files.atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("export check failed")
    assert (out / "a.txt").read_text() == "first"  # the old folder stays whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary left behind
    with files.atomic_dir(out) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
