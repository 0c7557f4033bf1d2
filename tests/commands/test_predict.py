"""`spanqa predict` at scale: answers stream to a file as they come, a SIGKILL costs at most one chunk and
`--resume` ends byte for byte equal to an uninterrupted run, two processes equal one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import V1, V2

from spanqa.cli import main
from spanqa.commands.predict import CHUNK

FILES = ("p.json", "na.json", "nbest.json", "p.answers.jsonl")


def predict_args(model, out, data=V2, *extra) -> list[str]:
    return ["predict", "--model", str(model), data, "--output", str(out / "p.json"), "--na-probs-out",
            str(out / "na.json"), "--nbest-out", str(out / "nbest.json"), "--allow-null", "--json", *extra]


def spanqa(*args) -> list[str]:
    return [sys.executable, "-m", "spanqa.cli", *args]


def contents(folder) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in FILES}


def test_answers_stream_to_a_file_whose_lines_make_the_official_files(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(predict_args(tiny_model, out)) == 0
    lines = (out / "p.answers.jsonl").read_text().splitlines()
    header, records, footer = json.loads(lines[0]), [json.loads(x) for x in lines[1:-1]], json.loads(lines[-1])
    assert header["chunk"] == CHUNK and header["spanqa_answers"] == 1 and footer == {"done": 499}
    preds = json.loads((out / "p.json").read_text())
    assert [r["id"] for r in records] == list(preds) and all(preds[r["id"]] == r["answer"] for r in records)
    assert main(predict_args(tiny_model, out)) == 2  # never over a run's answers without --resume
    assert "already holds answers" in capsys.readouterr().err
    assert main(predict_args(tiny_model, out, V1, "--resume")) == 2  # nor continues another run's
    assert "written by another run (source" in capsys.readouterr().err


@pytest.mark.slow
def test_a_sigkill_mid_run_then_resume_gives_files_byte_identical_to_an_uninterrupted_run(tiny_model, tmp_path):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    subprocess.run(spanqa(*predict_args(tiny_model, straight)), check=True, capture_output=True)
    proc = subprocess.Popen(spanqa(*predict_args(tiny_model, cut)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    answers, deadline = cut / "p.answers.jsonl", time.time() + 120
    # Kill it once the first chunk is whole on disk. A kill that lands inside a write cuts it short (Linux stops
    # copying when a fatal signal is pending), so a reader that sees lines may be seeing a chunk in flight.
    while time.time() < deadline and proc.poll() is None:
        if answers.exists() and answers.read_text().count("\n") > CHUNK:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = answers.read_text().count("\n") - 1
    assert CHUNK <= written < 499 and not (cut / "p.json").exists()
    done = subprocess.run(spanqa(*predict_args(tiny_model, cut, V2, "--resume")), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"({CHUNK} answered before, kept)" in done.stderr  # only the chunk in flight was answered again
    assert contents(cut) == contents(straight)


@pytest.mark.slow
def test_two_processes_each_take_a_shard_and_the_merged_files_equal_one_process(tiny_model, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(spanqa(*predict_args(tiny_model, one)), check=True, capture_output=True, env=env)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29563",
                "-m", "spanqa.cli", *predict_args(tiny_model, two)]
    done = subprocess.run(launcher, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "on 2 processes" in done.stderr
    assert (two / "p.answers.0-of-2.jsonl").exists() and (two / "p.answers.1-of-2.jsonl").exists()
    assert contents(two) == contents(one)
    assert json.loads(done.stdout.strip().splitlines()[-1])["total"] == 499


def test_a_full_disk_mid_run_keeps_the_whole_chunks_and_resume_finishes_the_same(tiny_model, tmp_path, monkeypatch,
                                                                                capsys):
    import errno

    from spanqa.commands import predict as predict_module

    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert main(predict_args(tiny_model, straight, V1)) == 0
    real_fsync, calls = os.fsync, [0]

    def fills_up(fd):
        calls[0] += 1
        if calls[0] == 3:  # the header, the first chunk, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(predict_module.os, "fsync", fills_up)
    assert main(predict_args(tiny_model, cut, V1)) == 2
    err = capsys.readouterr().err
    assert "could not write" in err and "p.answers.jsonl: the disk is full; it needs about" in err
    assert (cut / "p.answers.jsonl").read_text().count("\n") == 1 + CHUNK  # the first chunk, whole; no half chunk
    monkeypatch.undo()
    assert main(predict_args(tiny_model, cut, V1, "--resume")) == 0
    assert contents(cut) == contents(straight)
