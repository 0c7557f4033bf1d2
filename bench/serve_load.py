"""A bounded load test of `spanqa serve` on loopback: requests/s, p50/p99 latency, errors, and the gain
of micro-batching over batch size 1.

Starts the server twice (micro-batching on, then --max-batch-size 1) on the model's default backend (a folder from
`spanqa export --format all` runs the backend `auto` chooses), each time with 16 concurrent
clients sending SQuAD v1.1 dev questions for 30 s (only to 127.0.0.1). `ratio` = requests/s with
micro-batching / requests/s at batch size 1. Takes ~2 minutes at the defaults (the run time is fixed by
--seconds, not by the CPU).
Usage: python bench/serve_load.py [--model DIR] [--clients 16] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import SQUAD_V1_DEV, cpu_banner, report

from spanqa.data import load_examples


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, max_batch: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "spanqa.cli", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
           "--max-batch-size", str(max_batch), "--max-wait-ms", "5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start: " + proc.stderr.read()[-2000:])


async def load(port: int, items: list[dict], clients: int, seconds: float) -> dict:
    import httpx

    latencies, errors = [], 0
    stop = time.perf_counter() + seconds

    async def client(worker: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            i = worker
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    r = await http.post("/v1/answer", json=items[i % len(items)])
                    ok = r.status_code == 200 and r.json()["answers"]
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1
                i += clients

    t0 = time.perf_counter()
    await asyncio.gather(*(client(w) for w in range(clients)))
    elapsed = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"requests": len(latencies), "errors": errors, "requests_per_second": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def measure(model: str, items, clients: int, seconds: float, max_batch: int) -> dict:
    port = free_port()
    proc = start_server(model, port, max_batch)
    try:
        result = asyncio.run(load(port, items, clients, seconds))
        import httpx

        info = httpx.get(f"http://127.0.0.1:{port}/v1/model").json()
        result["mean_batch_size"] = info["batching"]["mean_batch_size"]
        result["backend"] = f"{info['backend']} {info['precision']}"
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"max batch {max_batch:>2} ({result['backend']}): {result['requests_per_second']:.1f} req/s, p50 {result['p50_ms']:.0f} ms, "
          f"p99 {result['p99_ms']:.0f} ms, errors {result['errors']}, mean batch {result['mean_batch_size']:.1f}",
          flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "runs/quickstart" if Path("runs/quickstart/model.safetensors").exists() else "minilm-l6"
    parser.add_argument("--model", default=default)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    cpu = cpu_banner()
    examples = load_examples(SQUAD_V1_DEV).examples[:400]
    items = [{"question": e.question, "context": e.context} for e in examples]
    batched = measure(args.model, items, args.clients, args.seconds, 32)
    single = measure(args.model, items, args.clients, args.seconds, 1)
    ratio = batched["requests_per_second"] / single["requests_per_second"]
    print(f"micro-batching gain: x{ratio:.2f}")
    report({"benchmark": "serve_load", "model": args.model, "clients": args.clients, "seconds": args.seconds,
            "micro_batched": batched, "batch_size_1": single, "ratio": ratio}, cpu)
    return 0 if batched["errors"] == 0 and single["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
