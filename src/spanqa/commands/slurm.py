"""`spanqa slurm -- <spanqa command>`: a readable sbatch script that runs the command on a cluster whose
compute nodes are offline, survives pre-emption and the time limit, and resumes by itself.

What the script does, in order:
1. loads the virtual environment made on the login node and points spanqa at the bundle from `spanqa fetch`
   with the hubs switched off (`HF_HUB_OFFLINE=1`): nothing reaches for the network;
2. starts one `torchrun` per node (`srun --ntasks-per-node=1`) with a c10d rendezvous on the first node whose
   id is the job id, which a requeued job keeps, so restarted nodes find each other again;
3. traps the signal Slurm sends `--signal-seconds` before pre-emption or the time limit
   (`#SBATCH --signal=B:USR1@SECONDS`, delivered to the batch shell), sends SIGTERM to the job's steps
   (`scancel --signal=TERM JOBID`: torchrun and its workers; spanqa's engine finishes the step, writes a
   checkpoint and exits; torchrun passes its own TERM on too), then `scontrol requeue`s the job;
4. runs the command with `--resume auto`, so the requeued job continues from its last checkpoint, and a
   tracker run (TensorBoard folder, W&B or MLflow run id kept in the output folder) continues too.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from spanqa.config import setting
from spanqa.files import write_text_atomic
from spanqa.errors import SpanqaError

TRAINING_COMMANDS = ("train", "distill", "pretrain", "classify")


@dataclass(frozen=True)
class SlurmConfig:
    """Resources and environment of the generated job."""

    job_name: str = setting("spanqa", "the job's name (also names the log file)")
    nodes: int = setting(1, "nodes; one torchrun per node")
    gpus_per_node: int = setting(0, "GPUs per node, one worker process each (0: CPU, one worker per node)")
    gpu_type: str = setting("", "GPU type the cluster names, e.g. a100 (gives --gpus-per-node=a100:N)")
    cpus_per_task: int = setting(8, "CPU cores per node for the job")
    mem: str = setting("", "memory per node, e.g. 64G (default: the partition's)")
    time: str = setting("24:00:00", "time limit, [D-]HH:MM:SS")
    partition: str = setting("", "partition (default: the cluster's)")
    account: str = setting("", "account to charge (default: yours)")
    mail_user: str = setting("", "mail the job's events to this address")
    mail_type: str = setting("END,FAIL,REQUEUE", "which events to mail (with --mail-user)")
    signal_seconds: int = setting(300, "seconds before pre-emption or the time limit at which workers checkpoint")
    modules: str = setting("", "environment modules to load first, e.g. 'gcc arrow python/3.10' (module load ...)")
    venv: str = setting("", "virtual environment to activate on the compute node (default: this one, if any)")
    bundle: str = setting("", "bundle from `spanqa fetch` (default: $SPANQA_BUNDLE)")
    port: int = setting(29500, "rendezvous port on the first node")
    log_dir: str = setting("slurm-logs", "folder for the job's output (appended across requeues)")
    predict_data: str = setting("", "after training, write predictions on this data into the output folder and print "
                               "the official scores (seed 003's evaluation step)")
    script: str = setting("", "where to write the script (default: <job_name>.sbatch)")
    submit: bool = setting(False, "submit it with sbatch after writing it")

    def __post_init__(self) -> None:
        for name in ("nodes", "cpus_per_task", "port"):
            if getattr(self, name) < 1:
                raise SpanqaError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1.")
        if self.gpus_per_node < 0 or self.signal_seconds < 0:
            raise SpanqaError("--gpus-per-node and --signal-seconds must be >= 0.")
        if not re.fullmatch(r"(\d+-)?\d{1,2}(:\d{2}){0,2}", self.time):
            raise SpanqaError(f"--time {self.time}: expected [D-]HH:MM:SS, e.g. 24:00:00 or 2-00:00:00.")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.job_name):
            raise SpanqaError(f"--job-name {self.job_name!r}: use letters, digits, '_', '.' and '-'.")


def spanqa_command(words: list[str]) -> list[str]:
    """The spanqa subcommand and flags after `--` (a leading `spanqa` is dropped), with `--resume auto` added
    to training commands that do not say how to resume.

    Raises:
        SpanqaError: nothing after `--`, or a command that is not a spanqa subcommand.
    """
    words = list(words)
    if words and words[0] == "--":
        words = words[1:]
    if words and Path(words[0]).name == "spanqa":
        words = words[1:]
    if not words or words[0].startswith("-"):
        raise SpanqaError("give the spanqa command to run after '--', e.g. "
                          "spanqa slurm --nodes 2 --gpus-per-node 4 -- spanqa train --config recipes/x.yaml")
    if words[0] in TRAINING_COMMANDS and not any(w == "--resume" or w.startswith("--resume=") for w in words):
        words += ["--resume", "auto"]
    return words


def render(config: SlurmConfig, command: list[str], venv: str = "", bundle: str = "") -> str:
    """The sbatch script's text (see the module doc for what it does)."""
    workers = config.gpus_per_node or 1
    directives = [
        ("job-name", config.job_name), ("nodes", config.nodes), ("ntasks-per-node", 1),
        ("gpus-per-node", (f"{config.gpu_type}:" if config.gpu_type else "") + str(config.gpus_per_node)
         if config.gpus_per_node else None), ("cpus-per-task", config.cpus_per_task),
        ("mem", config.mem or None), ("time", config.time), ("partition", config.partition or None),
        ("account", config.account or None), ("mail-user", config.mail_user or None),
        ("mail-type", config.mail_type if config.mail_user else None),
        ("signal", f"B:USR1@{config.signal_seconds}"), ("requeue", ""), ("open-mode", "append"),
        ("output", f"{config.log_dir}/%x-%j.out"),
    ]
    lines = [
        "#!/bin/bash",
        f"# Written by `spanqa slurm` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Submit with: sbatch THIS_FILE",
        f"# Runs: spanqa {shlex.join(command)}",
        *(f"#SBATCH --{key}" + (f"={value}" if value != "" else "") for key, value in directives if value is not None),
        "set -euo pipefail",
        "",
        "# The environment made on the login node, and the bundle from `spanqa fetch`: never the network.",
    ]
    if config.modules:
        lines.append(f"module load {config.modules}")
    if venv:
        lines.append(f"source {_shell_path(venv.rstrip('/') + '/bin/activate')}")
    if bundle:
        lines.append(f"export SPANQA_BUNDLE={_shell_path(bundle)}")
    lines += [
        "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1",
        f"export OMP_NUM_THREADS={max(1, config.cpus_per_task // workers)}",
        "",
        "# One torchrun per node; the rendezvous id is the job id, which a requeued job keeps.",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "",
        f"# {config.signal_seconds} s before pre-emption or the time limit Slurm sends USR1 to this shell: send",
        "# SIGTERM to the job's steps (torchrun and its workers: they finish the step, checkpoint and exit; a TERM",
        "# to srun itself would kill the step), then requeue; the restarted job resumes (--resume auto).",
        "checkpoint_and_requeue() {",
        '  echo "spanqa slurm: USR1 at $(date -u +%FT%TZ): checkpointing, then requeueing job $SLURM_JOB_ID"',
        '  scancel --signal=TERM "$SLURM_JOB_ID" || kill -TERM "$step" 2>/dev/null || true',
        '  wait "$step" || true',
        '  scontrol requeue "$SLURM_JOB_ID"',
        "  exit 0",
        "}",
        "trap checkpoint_and_requeue USR1",
        "",
        'echo "spanqa slurm: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST"',
        "srun --ntasks-per-node=1 --kill-on-bad-exit=1 \\",
        f'  torchrun --nnodes="$SLURM_NNODES" --nproc-per-node={workers} \\',
        f'  --rdzv-backend=c10d --rdzv-endpoint="$head_node:{config.port}" --rdzv-id="$SLURM_JOB_ID" \\',
        f"  -m spanqa.cli {shlex.join(command)} &",
        "step=$!",
        'wait "$step"',
        "",
    ]
    if config.predict_data:
        out = output_dir(command)
        lines += [
            "# Then, as seed 003 does: the predictions file and the official scores (SQuAD v2: with no-answer",
            "# probabilities).",
            f"python -m spanqa.cli predict --model {shlex.quote(out)} --data {shlex.quote(config.predict_data)} "
            f"--output {shlex.quote(out + '/predictions.json')} --na-probs-out {shlex.quote(out + '/na_probs.json')}",
            "",
        ]
    return "\n".join(lines)


def output_dir(command: list[str]) -> str:
    """The run's output folder: --output-dir in the command, else the recipe's (--config).

    Raises:
        SpanqaError: neither names one.
    """
    for flag in ("--output-dir", "--config"):
        for i, word in enumerate(command):
            value = word.split("=", 1)[1] if word.startswith(flag + "=") else \
                command[i + 1] if word == flag and i + 1 < len(command) else None
            if value and flag == "--output-dir":
                return value
            if value:
                from spanqa.config import read_recipe

                recipe_output = read_recipe(value).get("output_dir")
                if recipe_output:
                    return str(recipe_output)
    raise SpanqaError("--predict-data needs the run's output folder: give --output-dir in the command or in its recipe.")


def _shell_path(path: str) -> str:
    """A path for the script: quoted, except that $VARIABLES (e.g. $SCRATCH) still expand."""
    return f'"{path}"' if "$" in path else shlex.quote(path)


def write_job(config: SlurmConfig, words: list[str]) -> tuple[Path, str]:
    """Write the script (atomically); submit it when asked. Returns (script path, job id or "")."""
    command = spanqa_command(words)
    venv = config.venv or (sys.prefix if sys.prefix != sys.base_prefix else "")
    bundle = config.bundle or os.environ.get("SPANQA_BUNDLE", "")
    if bundle and "$" not in bundle and not Path(bundle).expanduser().is_dir():
        raise SpanqaError(f"--bundle {bundle}: no such folder; make one with spanqa fetch --output {bundle} ...")
    path = Path(config.script or f"{config.job_name}.sbatch")
    write_text_atomic(path, render(config, command, venv, bundle))  # paths as given: $SCRATCH/... stays
    path.chmod(0o755)
    Path(config.log_dir).mkdir(parents=True, exist_ok=True)
    if not config.submit:
        return path, ""
    try:
        out = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True, check=True)
    except FileNotFoundError:
        raise SpanqaError(f"wrote {path}, but sbatch is not on PATH here: submit it on the login node with sbatch "
                          f"{path}") from None
    except subprocess.CalledProcessError as exc:
        raise SpanqaError(f"wrote {path}; sbatch refused it: {exc.stderr.strip()}") from None
    return path, out.stdout.strip().split(";")[0]
