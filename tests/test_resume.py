"""clipf.engine.resume: positions, choosing a checkpoint (damaged ones skipped), identities, RNG states,
worker skips, stop requests and the save clock. The kill/resume identity runs are in test_train_resume.py."""

from __future__ import annotations

import os
import random
import signal

import numpy as np
import pytest
import torch

from clipf.engine import resume as R


def save(path, **extra):
    torch.save({"epoch": 1, "state_dict": {"w": torch.ones(2)}, **extra}, path)
    return path


def test_positions_order_epoch_and_step_checkpoints(tmp_path):
    for name in ("epoch_1.pt", "step_1_30.pt", "step_1_10.pt", "epoch_2.pt", "step_0_5.pt"):
        save(tmp_path / name)
    (tmp_path / "notes.pt.txt").write_text("x")
    order = [f.name for _, f in R.checkpoints(tmp_path)]
    assert order == ["epoch_2.pt", "step_1_30.pt", "step_1_10.pt", "epoch_1.pt", "step_0_5.pt"]
    assert (
        R.Position.of("step_3_1200.pt") == R.Position(3, 1200)
        and R.Position(3, 1200).step_name() == "step_3_1200.pt"
    )
    assert R.Position.of("epoch_latest.pt") is None


def test_damaged_checkpoints_are_never_chosen(tmp_path):
    good = save(tmp_path / "step_0_10.pt")
    (tmp_path / "step_0_20.pt").write_bytes(b"")  # killed before the first byte
    data = save(tmp_path / "x.pt").read_bytes()
    (tmp_path / "step_0_30.pt").write_bytes(data[: len(data) // 2])  # killed during the write
    flipped = bytearray(data)
    at = data.index(np.ones(2, np.float32).tobytes())  # inside the tensor's bytes
    flipped[at + 1] ^= 0xFF
    (tmp_path / "step_0_40.pt").write_bytes(bytes(flipped))
    said = []
    assert R.choose_latest(tmp_path, said.append) == good
    assert len(said) == 3 and all("skipping damaged checkpoint" in s for s in said)
    assert "empty" in said[-1] and "truncated" in said[-2]
    assert R.choose_latest(tmp_path / "none") is None


def test_prune_keeps_the_newest_steps_and_every_epoch(tmp_path):
    for name in ("epoch_1.pt", "step_1_10.pt", "step_1_20.pt", "step_1_30.pt"):
        save(tmp_path / name)
    gone = R.prune_steps(tmp_path, 2)
    assert [g.name for g in gone] == ["step_1_10.pt"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["epoch_1.pt", "step_1_20.pt", "step_1_30.pt"]


def test_identity_mismatch_names_the_options(tmp_path):
    saved = R.identity({"model": "a", "batch_size": 16, "world_size": 2, "lr": 1.0})
    assert "lr" not in saved
    R.check_identity("c.pt", saved, dict(saved))
    R.check_identity("c.pt", None, saved)  # stock checkpoints carry no identity
    with pytest.raises(
        R.ResumeError, match=r"c\.pt: .*batch_size = 16 there, 32 now, world_size = 2 there, 1 now"
    ):
        R.check_identity("c.pt", saved, {**saved, "batch_size": 32, "world_size": 1})


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = R.rng_state()
    want = (random.random(), np.random.rand(), torch.rand(1).item())
    save(tmp_path / "c.pt", clipf={"rng": [state]})
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)["clipf"]["rng"][0]
    random.random(), np.random.rand(), torch.rand(5)
    R.set_rng_state(loaded)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == want


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_worker_skips_follow_the_round_robin(workers):
    for batches in (0, 1, 7, 12):
        skips = R.worker_skips(batches, workers)
        assert len(skips) == max(1, workers) and sum(skips) == batches
        made = [j % max(1, workers) for j in range(batches)]  # worker of batch j
        assert skips == [made.count(w) for w in range(max(1, workers))]


def test_stop_request_catches_term_and_usr1_and_restores_handlers():
    before = signal.getsignal(signal.SIGUSR1)
    with R.StopRequest() as stop:
        assert stop.signal is None
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.signal == "SIGUSR1"
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == "SIGTERM"
    assert signal.getsignal(signal.SIGUSR1) == before


def test_save_clock_by_steps_and_minutes(monkeypatch):
    clock = R.SaveClock(steps=3)
    assert [clock.due(s) for s in range(5)] == [False, False, False, True, True]
    clock.saved(3)
    assert not clock.due(5) and clock.due(6)
    now = [100.0]
    monkeypatch.setattr(R.time, "monotonic", lambda: now[0])
    timed = R.SaveClock(minutes=0.5)
    assert not timed.due(1)
    now[0] += 31
    assert timed.due(1)
    assert not R.SaveClock().due(10**6)


def test_worker_seeds_are_a_function_of_the_sample_position():
    """Each sample's draw depends on (seed, rank, worker, epoch, index) only, and leaves the caller's RNG
    stream untouched; a resumed epoch's first transformed sample draws what it drew."""
    seeds = R.WorkerSeeds(0, 0)
    seeds.start_epoch(2)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    draws = [seeds.seeded(lambda _: torch.rand(1).item(), None) for _ in range(4)]
    assert torch.equal(torch.get_rng_state(), before) and len(set(draws)) == 4
    later = R.WorkerSeeds(0, 0)
    later.start_epoch(2, skip=2)
    torch.rand(7)  # whatever the trainer drew meanwhile
    assert [later.seeded(lambda _: torch.rand(1).item(), None) for _ in range(2)] == draws[2:]
    other = R.WorkerSeeds(0, 0)
    other.start_epoch(3)
    assert other.seeded(lambda _: torch.rand(1).item(), None) != draws[0]


def test_masking_tokenizer_streams_restart_each_epoch():
    """A resumed run's fresh tokenizer draws epoch e's masks as the long-running one did; epoch 0 draws
    what it always drew (a plain generator of (seed, rank, 0, 0))."""
    from clipf.masking import MaskingTokenizer
    from clipf.masking import random as random_masker

    caps = [" ".join(f"w{i} word{j}" for j in range(20)) for i in range(8)]
    long_running = MaskingTokenizer("random", 6, seed=3)
    first = long_running(caps)
    assert torch.equal(first, random_masker(caps, 6, np.random.default_rng([3, 0, 0, 0])))
    long_running.set_epoch(1)
    later = long_running(caps)
    fresh = MaskingTokenizer("random", 6, seed=3)
    fresh.set_epoch(1)
    assert torch.equal(fresh(caps), later) and not torch.equal(first, later)
    import pickle

    copy = pickle.loads(pickle.dumps(fresh))
    assert copy.epoch == 1 and torch.equal(copy(caps), later)


def test_seeded_preprocess_keeps_the_transform_attributes():
    """open_clip_train's synthetic dataset reads preprocess.transforms[0].size."""
    from torchvision import transforms

    from clipf.engine.adapters import SeededPreprocess

    pp = transforms.Compose([transforms.RandomResizedCrop(8), transforms.ToTensor()])
    wrapped = SeededPreprocess(pp, R.WorkerSeeds(0, 0))
    assert wrapped.transforms[0].size == (8, 8)
    from PIL import Image

    img = Image.new("RGB", (16, 16))
    first = wrapped(img)
    again = SeededPreprocess(pp, R.WorkerSeeds(0, 0))
    assert torch.equal(again(img), first)
