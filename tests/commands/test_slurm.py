"""`spanqa slurm`: the generated scripts as text and as bash, and a real one-node Slurm that pre-empts a
training job mid-run, requeues it and sees it finish with the weights of an uninterrupted run."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import train_args
from slurm_cluster import LocalSlurm

from spanqa.cli import main
from spanqa.errors import SpanqaError
from spanqa.commands.slurm import SlurmConfig, render, spanqa_command


def script(tmp_path, *flags) -> str:
    path = tmp_path / "job.sbatch"
    assert main(["slurm", "--script", str(path), "--log-dir", str(tmp_path / "logs"), *flags]) == 0
    subprocess.run(["bash", "-n", str(path)], check=True)  # valid bash
    return path.read_text()


def test_one_node_one_gpu(tmp_path):
    text = script(tmp_path, "--gpus-per-node", "1", "--", "spanqa", "train", "--config", "recipes/x.yaml")
    assert "#SBATCH --nodes=1\n" in text and "#SBATCH --gpus-per-node=1\n" in text
    assert "#SBATCH --signal=B:USR1@300\n" in text and "#SBATCH --requeue\n" in text
    assert "--nproc-per-node=1" in text and '--rdzv-id="$SLURM_JOB_ID"' in text
    assert "-m spanqa.cli train --config recipes/x.yaml --resume auto &" in text
    assert "trap checkpoint_and_requeue USR1" in text and 'scontrol requeue "$SLURM_JOB_ID"' in text
    assert "HF_HUB_OFFLINE=1" in text and "#SBATCH --partition" not in text and "#SBATCH --mail-user" not in text


def test_four_nodes_eight_gpus_with_every_option(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    text = script(tmp_path, "--nodes", "4", "--gpus-per-node", "8", "--cpus-per-task", "64", "--mem", "480G",
                  "--time", "2-00:00:00", "--partition", "gpu", "--account", "proj", "--mail-user", "me@x.org",
                  "--signal-seconds", "600", "--gpu-type", "a100", "--modules", "gcc arrow python/3.10", "--bundle", str(bundle), "--venv", "/opt/venvs/qa", "--port", "29600",
                  "--", "distill", "--config", "recipes/tinyroberta-mrqa.yaml", "--resume", "yes")
    assert "module load gcc arrow python/3.10\n" in text
    for line in ("--nodes=4", "--gpus-per-node=a100:8", "--cpus-per-task=64", "--mem=480G", "--time=2-00:00:00",
                 "--partition=gpu", "--account=proj", "--mail-user=me@x.org", "--mail-type=END,FAIL,REQUEUE",
                 "--signal=B:USR1@600", "--ntasks-per-node=1"):
        assert f"#SBATCH {line}\n" in text
    assert "source /opt/venvs/qa/bin/activate" in text and f"export SPANQA_BUNDLE={bundle}" in text
    assert "--nproc-per-node=8" in text and '"$head_node:29600"' in text and "OMP_NUM_THREADS=8" in text
    assert "distill --config recipes/tinyroberta-mrqa.yaml --resume yes &" in text  # its own --resume kept


def test_bad_slurm_requests_say_what_is_expected(tmp_path):
    with pytest.raises(SpanqaError, match="after '--'"):
        spanqa_command([])
    with pytest.raises(SpanqaError, match="--time 25h"):
        SlurmConfig(time="25h")
    with pytest.raises(SpanqaError, match="--nodes 0"):
        SlurmConfig(nodes=0)
    assert main(["slurm", "--bundle", str(tmp_path / "none"), "--", "train"]) == 2
    assert "predict --model m" in render(SlurmConfig(), spanqa_command(["predict", "--model", "m"]))
    with pytest.raises(SpanqaError, match="needs the run's output folder"):
        render(SlurmConfig(predict_data="squad_v2"), spanqa_command(["train", "--model", "m"]))


def test_the_job_ends_with_seed_003s_evaluation(tmp_path):
    text = script(tmp_path, "--predict-data", "squad_v2", "--", "train", "--config", "recipes/roberta-base-squad2.yaml")
    assert ("python -m spanqa.cli predict --model runs/roberta-base-squad2 --data squad_v2 --output "
            "runs/roberta-base-squad2/predictions.json --na-probs-out runs/roberta-base-squad2/na_probs.json") in text


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster, why = LocalSlurm.start(tmp_path_factory.mktemp("slurm"))
    if cluster is None:
        print(f"skipping the real-Slurm test: {why}", file=sys.stderr)
        pytest.skip(why)
    yield cluster
    cluster.stop()


def _weights(path):
    from safetensors.numpy import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.slow
def test_a_pre_empted_job_is_requeued_resumes_and_ends_with_the_uninterrupted_weights(slurm, tiny_model, tmp_path):
    common = ["--max-steps", "400", "--save-steps", "50", "--learning-rate", "1e-3", "--precision", "fp32",
              "--per-device-train-batch-size", "8", "--logging-steps", "5"]
    straight = tmp_path / "straight"  # one thread, as the job runs (--cpus-per-task 1): same float sums
    subprocess.run([sys.executable, "-m", "spanqa.cli", *train_args(tiny_model, straight, *common)], check=True,
                   capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    out = tmp_path / "job"
    job_script = tmp_path / "job.sbatch"
    assert main(["slurm", "--cpus-per-task", "1", "--time", "00:20:00", "--signal-seconds", "60",
                 "--script", str(job_script), "--log-dir", str(tmp_path / "logs"),
                 "--", *train_args(tiny_model, out, *common)]) == 0
    submitted = subprocess.run(["sbatch", "--parsable", str(job_script)], env=slurm.env, capture_output=True,
                               text=True, check=True, cwd=tmp_path)
    job = submitted.stdout.strip().split(";")[0]
    deadline = time.time() + 300
    while not list(out.glob("checkpoint-*")) and time.time() < deadline:  # running, and past step 50
        time.sleep(0.2)
    assert list(out.glob("checkpoint-*")), slurm.job(job)
    # what pre-emption does: the batch shell gets --signal's USR1
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], env=slurm.env, check=True)
    while time.time() < deadline:
        state = slurm.job(job)
        if state.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") and int(state.get("Restarts", 0)):
            break
        time.sleep(1)
    log = "\n".join(p.read_text() for p in (tmp_path / "logs").glob("*.out"))
    assert state.get("JobState") == "COMPLETED" and int(state["Restarts"]) >= 1, (state, log[-3000:])
    assert "checkpointing, then requeueing" in log and "stopped by SIGTERM" in log and "resuming from" in log
    a, b = _weights(straight), _weights(out)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # bitwise: the pre-emption cost nothing
