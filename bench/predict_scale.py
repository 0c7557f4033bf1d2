"""`spanqa predict` over a corpus: questions/s and peak RSS as the input grows, and what a SIGKILL costs.

Runs `spanqa predict` (a subprocess, as a user would) on the first N questions of SQuAD v1.1 train for each N in
--sizes (default 10,000 and 30,000; `--sizes 10000,87599` is the whole training set, ~17 min more on 2 cores),
sampling the process's RSS every 0.2 s. Then the kill test on the first size: a run SIGKILLed once half the
answers are on disk, resumed with --resume; it reports the answers that were on disk, those kept, the questions
answered again, and whether the final files equal the uninterrupted run's byte for byte.

There is no other tool to run beside it (the transformers pipeline that did this is gone in 5.3), so `ratio` is
the flatness of memory: peak RSS at the smallest size / peak RSS at the largest (1.0 = flat; a loader that holds
the corpus falls with the size). Usage: python bench/predict_scale.py [--model DIR] [--sizes 10000,30000]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import SQUAD_V1_TRAIN, cpu_banner, report, rss_mb


def predict(model: str, n: int, out: Path, *extra: str, kill_at: int = 0) -> dict:
    """One `spanqa predict` run; with `kill_at`, SIGKILL it once that many answers are on disk."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "spanqa.cli", "predict", "--model", model, str(SQUAD_V1_TRAIN), "--max-samples",
           str(n), "--output", str(out / "p.json"), "--na-probs-out", str(out / "na.json"), "--json", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, series, stop = [0.0], [], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            r = rss_mb(proc.pid)
            peak[0] = max(peak[0], r)
            series.append(r)
            stop.wait(0.2)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    answers = out / "p.answers.jsonl"
    if kill_at:
        while proc.poll() is None:
            if answers.exists() and answers.read_text().count("\n") > kill_at:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
    stdout, stderr = proc.communicate()
    stop.set()
    watcher.join()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 and not kill_at:
        raise SystemExit(f"spanqa predict failed: {stderr[-2000:]}")
    on_disk = answers.read_text().count("\n") - 1 if answers.exists() else 0
    return {"questions": n, "seconds": seconds, "questions_per_second": n / seconds, "peak_rss_mb": peak[0],
            "stderr": stderr.strip().splitlines()[-1] if stderr.strip() else "", "answers_on_disk": on_disk,
            "scores": stdout.strip().splitlines()[-1] if stdout.strip() else ""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "runs/quickstart-all" if Path("runs/quickstart-all").exists() else "runs/quickstart"
    parser.add_argument("--model", default=default)
    parser.add_argument("--sizes", default="10000,30000")
    parser.add_argument("--work", default="runs/bench-predict")
    args = parser.parse_args()
    cpu = cpu_banner()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.work)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    runs = []
    for n in sizes:
        r = predict(args.model, n, work / f"n{n}")
        runs.append(r)
        print(f"{n:>6} questions: {r['questions_per_second']:.1f} q/s ({r['seconds']:.0f} s in all, load included), "
              f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    first = sizes[0]
    killed = predict(args.model, first, work / "killed", kill_at=first // 2)
    resumed = predict(args.model, first, work / "killed", "--resume")
    kept = int(resumed["stderr"].split("(")[1].split(" answered before")[0]) if "answered before" in resumed["stderr"] \
        else 0
    same = all((work / "killed" / f).read_bytes() == (work / f"n{first}" / f).read_bytes()
               for f in ("p.json", "na.json", "p.answers.jsonl"))
    kill = {"answers_on_disk_at_kill": killed["answers_on_disk"], "kept": kept,
            "answered_again": killed["answers_on_disk"] - kept, "resume_seconds": resumed["seconds"],
            "byte_identical": same}
    print(f"SIGKILL after {killed['answers_on_disk']} answers were on disk: --resume kept {kept}, answered "
          f"{killed['answers_on_disk'] - kept} of them again (plus the chunk in flight), finished in "
          f"{resumed['seconds']:.0f} s; files byte-identical to the uninterrupted run: {same}", flush=True)
    report({"benchmark": "predict_scale", "model": args.model, "runs": runs, "kill": kill,
            "ratio": runs[0]["peak_rss_mb"] / runs[-1]["peak_rss_mb"]}, cpu)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
