"""A real one-node Slurm on localhost for the tests: munged, slurmctld and slurmd from Debian's packages,
started in a temporary folder with their own ports, and stopped afterwards.

`LocalSlurm.start()` returns None with the reason when this machine cannot run them (packages missing, not
root, daemons that do not come up); the tests skip with that reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "scancel")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSlurm:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    @classmethod
    def start(cls, root: Path) -> tuple[LocalSlurm | None, str]:
        missing = [d for d in DAEMONS if not (shutil.which(d) or Path("/usr/sbin", d).exists())]
        if missing:
            return None, f"Slurm/munge not installed ({', '.join(missing)} missing): apt-get install slurmctld slurmd slurm-client munge"
        if os.geteuid() != 0:
            return None, "the local Slurm daemons need root"
        cluster = cls(root)
        try:
            cluster._configure()
            cluster._run_daemons()
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            cluster.stop()
            return None, f"the local Slurm did not come up: {exc}"
        return cluster, ""

    def _configure(self) -> None:
        host = socket.gethostname().split(".")[0]
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        r = self.root
        self.conf.write_text("\n".join([
            "ClusterName=spanqatest", f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}", "AuthType=auth/munge",
            "SlurmUser=root", "SlurmdUser=root", f"StateSaveLocation={r}/state", f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldPidFile={r}/slurmctld.pid", f"SlurmdPidFile={r}/slurmd.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log", f"SlurmdLogFile={r}/log/slurmd.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "SchedulerType=sched/backfill", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "ReturnToService=2", "JobRequeue=1", "MpiDefault=none", "KillWait=30",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory=2000 State=UNKNOWN",
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP", "",
        ]))

    def _run_daemons(self) -> None:
        if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
            Path("/run/munge").mkdir(parents=True, exist_ok=True)
            subprocess.run(["munged", "--force"], check=True, capture_output=True)
        subprocess.run(["slurmctld"], env=self.env, check=True, capture_output=True)
        subprocess.run(["slurmd"], env=self.env, check=True, capture_output=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True)
            if out.stdout.strip() == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError("the node never became idle: " + (self.root / "log" / "slurmctld.log").read_text()[-800:])

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as {key: value} ({} once the job is gone)."""
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=self.env, capture_output=True, text=True)
        return dict(w.split("=", 1) for w in out.stdout.split() if "=" in w)

    def stop(self) -> None:
        subprocess.run(["scancel", "--full", "--user", "root"], env=self.env, capture_output=True)
        for pid_file in ("slurmd.pid", "slurmctld.pid"):
            path = self.root / pid_file
            if path.exists():
                subprocess.run(["kill", path.read_text().strip()], capture_output=True)
        time.sleep(1)
