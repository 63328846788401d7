import random

import numpy as np
import torch

from counseltune.train import checkpoint as ckpt


def write_file(name: str, text: str = "x"):
    def write(tmp):
        (tmp / name).write_text(text)
    return write


def test_a_saved_checkpoint_is_a_complete_step_folder_named_by_latest(tmp_path):
    path = ckpt.save_checkpoint(tmp_path, 4, write_file("weights.bin"), {"note": "a"})
    assert path == tmp_path / "step-4"
    assert (path / "weights.bin").exists()
    assert ckpt.read_meta(path) == {"note": "a", "step": 4}
    assert (tmp_path / "latest").read_text().strip() == "step-4"
    assert ckpt.latest_checkpoint(tmp_path) == path
    assert not list(tmp_path.glob(".tmp-*"))


def test_only_the_last_two_checkpoints_are_kept(tmp_path):
    for step in (2, 4, 6, 8):
        ckpt.save_checkpoint(tmp_path, step, write_file("w"), {})
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-6", "step-8"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["step-6", "step-8"]


def test_steps_order_numerically_not_alphabetically(tmp_path):
    for step in (9, 10):
        ckpt.save_checkpoint(tmp_path, step, write_file("w"), {})
    assert ckpt.latest_checkpoint(tmp_path).name == "step-10"


def test_a_half_written_checkpoint_is_ignored_and_then_cleaned_up(tmp_path):
    ckpt.save_checkpoint(tmp_path, 4, write_file("w"), {})
    killed_mid_save = ckpt.begin_checkpoint(tmp_path, 6)
    (killed_mid_save / "w").write_text("partial")
    no_meta = tmp_path / "step-8"  # e.g. copied by hand without its checkpoint.json
    no_meta.mkdir()
    torn_meta = tmp_path / "step-9"
    torn_meta.mkdir()
    (torn_meta / ckpt.META).write_text('{"step": 9')
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "step-4"

    ckpt.save_checkpoint(tmp_path, 6, write_file("w", "whole"), {})
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "step-6"
    assert (tmp_path / "step-6" / "w").read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["step-4", "step-6"]


def test_a_kill_between_rename_and_pointer_update_loses_nothing(tmp_path):
    ckpt.save_checkpoint(tmp_path, 2, write_file("w"), {})
    ckpt.save_checkpoint(tmp_path, 4, write_file("w"), {})
    ckpt.write_text_atomic(tmp_path / ckpt.LATEST, "step-2\n")  # the pointer update never happened
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "step-4"


def test_resaving_a_step_replaces_it_whole(tmp_path):
    ckpt.save_checkpoint(tmp_path, 3, write_file("old"), {"v": 1})
    ckpt.save_checkpoint(tmp_path, 3, write_file("new"), {"v": 2})
    assert ckpt.read_meta(tmp_path / "step-3")["v"] == 2
    assert [p.name for p in (tmp_path / "step-3").iterdir() if p.name != ckpt.META] == ["new"]


def test_clearing_removes_every_checkpoint_and_the_pointer(tmp_path):
    ckpt.save_checkpoint(tmp_path, 2, write_file("w"), {})
    ckpt.clear_checkpoints(tmp_path)
    assert ckpt.latest_checkpoint(tmp_path) is None
    assert not (tmp_path / ckpt.LATEST).exists()


def test_missing_folder_has_no_checkpoint(tmp_path):
    assert ckpt.latest_checkpoint(tmp_path / "nowhere") is None


def draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    torch.save(ckpt.rng_state(), tmp_path / "rng.pt")
    expected = draws()
    draws()
    ckpt.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert draws() == expected
