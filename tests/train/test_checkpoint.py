"""Checkpoints: a round trip restores model, optimizer, schedule and RNG; old ones are pruned, the best kept; the
newest that verifies is resumed, weights load strictly, pickles are never run, a full disk loses nothing."""

import errno
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering

from spanqa.artifacts import WEIGHTS_FILE, CheckpointManifest
from spanqa.errors import SpanqaError
from spanqa.files import describe_files
from spanqa.train.checkpoint import (latest_checkpoint, list_checkpoints, load_checkpoint, load_weights, rng_state,
                                     save_checkpoint, set_rng_state)
from spanqa.train.optim import StepPlan, build_optimizer, build_schedule


def parts(seed: int):
    torch.manual_seed(seed)
    model = BertForQuestionAnswering(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                num_attention_heads=2, intermediate_size=32))
    optimizer = build_optimizer(model, "adamw", 1e-2, 0.01, (0.9, 0.999), 1e-8)
    return model, optimizer, build_schedule(optimizer, "linear", StepPlan(10, 0.2))


def train_step(model, optimizer, scheduler):
    out = model(input_ids=torch.randint(0, 50, (2, 8)), start_positions=torch.tensor([1, 2]),
                end_positions=torch.tensor([3, 4]))
    out.loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def test_round_trip_continues_exactly_as_without_the_checkpoint(tmp_path):
    model, optimizer, scheduler = parts(0)
    for _ in range(3):
        train_step(model, optimizer, scheduler)
    save_checkpoint(tmp_path, 3, model, optimizer, scheduler, None, {"step": 3}, {"command": "train"},
                    [rng_state()], keep=2)
    train_step(model, optimizer, scheduler)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    after_python, after_numpy = random.random(), np.random.rand()

    model2, optimizer2, scheduler2 = parts(1)  # other weights: everything must come from the checkpoint
    state, rng = load_checkpoint(list_checkpoints(tmp_path)[-1], model2, optimizer2, scheduler2, None)
    set_rng_state(rng[0])
    assert state == {"step": 3} and scheduler2.last_epoch == 3
    train_step(model2, optimizer2, scheduler2)
    assert all(torch.equal(expected[k], v) for k, v in model2.state_dict().items())
    assert (random.random(), np.random.rand()) == (after_python, after_numpy)


def test_only_the_last_k_are_kept_but_never_the_protected_best(tmp_path):
    model, optimizer, scheduler = parts(0)
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, step, model, optimizer, scheduler, None, {"step": step}, {}, [rng_state()],
                        keep=2, protect="checkpoint-10")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-10", "checkpoint-30", "checkpoint-40"]
    assert not list(tmp_path.glob(".tmp-*"))  # nothing half-written left behind


class Plant:
    """A pickle that writes a file when unpickled: what a hostile checkpoint or model folder would hold."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return Path.write_text, (Path(self.target), "code ran")


def saved(tmp_path, steps=(2, 4)):
    model, optimizer, scheduler = parts(0)
    for step in steps:
        train_step(model, optimizer, scheduler)
        save_checkpoint(tmp_path, step, model, optimizer, scheduler, None, {"step": step}, {}, [rng_state()], keep=5)
    return model


def test_a_cut_short_newest_checkpoint_is_skipped_with_its_reason_and_none_verifying_is_an_error(tmp_path, caplog):
    saved(tmp_path)
    newest = tmp_path / "checkpoint-4" / "optimizer.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # a copy that stopped part way
    with caplog.at_level("WARNING", logger="spanqa.train.checkpoint"):
        assert latest_checkpoint(tmp_path).name == "checkpoint-2"
    assert "skipped checkpoint-4: optimizer.pt has 100 bytes" in caplog.text
    (tmp_path / "checkpoint-2" / CheckpointManifest.FILE).unlink()  # a save killed before its manifest
    with pytest.raises(SpanqaError) as err:
        latest_checkpoint(tmp_path)
    assert "checkpoint-4: optimizer.pt has 100 bytes" in str(err.value)
    assert f"checkpoint-2: no {CheckpointManifest.FILE}" in str(err.value)


def test_weights_load_strictly_a_missing_or_unexpected_tensor_is_named(tmp_path):
    from safetensors.torch import load_file

    model = saved(tmp_path, steps=(2,))
    weights = load_file(str(tmp_path / "checkpoint-2" / WEIGHTS_FILE))
    load_weights(parts(1)[0], dict(weights), "ok")  # all there: loads
    del weights["qa_outputs.bias"]
    with pytest.raises(SpanqaError, match=r"missing 1 tensor\(s\): qa_outputs.bias"):
        load_weights(parts(1)[0], weights, "cut")
    weights["qa_outputs.bias"], weights["extra.weight"] = model.qa_outputs.bias, torch.zeros(2)
    with pytest.raises(SpanqaError, match=r"unexpected 1 tensor\(s\): extra.weight"):
        load_weights(parts(1)[0], weights, "grown")


def test_a_planted_pickle_in_a_checkpoint_is_refused_and_never_run(tmp_path):
    saved(tmp_path, steps=(2,))
    folder, marker = tmp_path / "checkpoint-2", tmp_path / "marker.txt"
    torch.save({"state": Plant(str(marker)), "param_groups": []}, folder / "optimizer.pt")
    # the planter rewrote the manifest too: the files verify, and the unpickler still refuses
    CheckpointManifest(step=2, files=describe_files(folder, [p for p in folder.iterdir()
                                                             if p.name != CheckpointManifest.FILE])).save(folder)
    assert latest_checkpoint(tmp_path) == folder
    with pytest.raises(SpanqaError, match="optimizer.pt: refused: not a plain state"):
        load_checkpoint(folder, *parts(1), None)
    assert not marker.exists()


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint_and_leaves_nothing_half_written(tmp_path,
                                                                                              monkeypatch):
    model = saved(tmp_path, steps=(2,))
    real_save = torch.save

    def fills_the_disk(obj, path, *args, **kwargs):
        if str(path).endswith("scheduler.pt"):
            Path(path).write_bytes(b"\0" * 1000)  # part of it got out before the disk filled
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fills_the_disk)
    model2, optimizer, scheduler = parts(0)
    with pytest.raises(SpanqaError) as err:
        save_checkpoint(tmp_path, 4, model2, optimizer, scheduler, None, {"step": 4}, {}, [rng_state()], keep=5)
    message = str(err.value)
    assert "could not write" in message and "checkpoint-4" in message and "the disk is full" in message
    assert "it needs about" in message
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-2"]  # no partial folder
    monkeypatch.setattr(torch, "save", real_save)
    assert latest_checkpoint(tmp_path).name == "checkpoint-2"
    load_checkpoint(tmp_path / "checkpoint-2", *parts(1), None)  # still loads
