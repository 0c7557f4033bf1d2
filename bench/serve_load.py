"""A bounded load test of `spanqa serve` on loopback: requests/s, p50/p99 latency, errors, the gain of
micro-batching over batch size 1, and fairness under mixed load.

Mixed load: 30 clients send one-question requests while 2 clients send the largest batches the server
accepts (12 questions on 20,000-character passages: ~400 of the 512 windows a request may cost); the small requests' p50/p99 with the fair scheduler (the
default) and with first-come-first-served whole requests (`--fair-scheduling false`), against the small
requests alone; server RSS before and after. Goal: small-request p99 with the big clients under 2x its value
without them.

Starts the server twice (micro-batching on, then --max-batch-size 1) on the model's default backend (a folder from
`spanqa export --format all` runs the backend `auto` chooses), each time with 16 concurrent
clients sending SQuAD v1.1 dev questions for 30 s (only to 127.0.0.1). `ratio` = requests/s with
micro-batching / requests/s at batch size 1. Takes ~2 minutes at the defaults (the run time is fixed by
--seconds, not by the CPU).
Usage: python bench/serve_load.py [--model DIR] [--clients 16] [--seconds 30]

`--soak SECONDS` instead runs the mixed load (30 one-question clients, 2 big-batch clients) for that long and
samples the server's RSS every 10 s: does memory level off? `ratio` there = requests/s in the last minute /
requests/s in the first (steady service: ~1). python bench/serve_load.py --soak 600 takes ~11 minutes.
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
from _common import SQUAD_V1_DEV, cpu_banner, report, rss_mb

from spanqa.data import load_examples


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, max_batch: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "spanqa.cli", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
           "--max-batch-size", str(max_batch), "--max-wait-ms", "5", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                for _ in range(3):  # warm-up: first forward passes allocate and pick kernels; not timed
                    httpx.post(f"http://127.0.0.1:{port}/v1/answer", timeout=120,
                               json={"question": "Who built it?", "context": "The tower was built by Eiffel."})
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start: " + proc.stderr.read()[-2000:])


async def load(port: int, items: list[dict], clients: int, seconds: float, big: dict | None = None,
               big_clients: int = 0) -> dict:
    import httpx

    latencies, errors, big_done = [], 0, []
    stop = time.perf_counter() + seconds

    async def client(worker: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as http:
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

    async def big_client() -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as http:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = await http.post("/v1/answer/batch", json=big)
                if r.status_code == 200:
                    big_done.append(time.perf_counter() - t0)
                else:
                    errors += 1
                    print(f"big request: {r.status_code} {r.text[:200]}", file=sys.stderr)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(w) for w in range(clients)), *(big_client() for _ in range(big_clients)))
    elapsed = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"requests": len(latencies), "errors": errors, "requests_per_second": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "big_requests": len(big_done), "big_mean_s": float(np.mean(big_done)) if big_done else None}


def measure_mixed(model: str, items, big: dict, seconds: float, fair: bool, big_clients: int) -> dict:
    port = free_port()
    proc = start_server(model, port, 32, "--fair-scheduling", str(fair).lower(), "--max-body-bytes", "2000000",
                        "--request-timeout", "600", "--max-queue", "4096")
    try:
        before = rss_mb(proc.pid)
        result = asyncio.run(load(port, items, 30, seconds, big, big_clients))
        result["rss_mb_before"], result["rss_mb_after"] = before, rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
    label = "small only" if not big_clients else ("fair scheduler" if fair else "first come first served")
    print(f"mixed load, {label:>22}: small requests p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
          f"{result['requests_per_second']:.1f} req/s; {result['big_requests']} big requests; errors "
          f"{result['errors']}; RSS {result['rss_mb_before']:.0f} -> {result['rss_mb_after']:.0f} MB", flush=True)
    return result


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


def soak(model: str, items, big: dict, seconds: float) -> dict:
    """The mixed load for `seconds`, the server's RSS sampled every 10 s, requests counted per minute."""
    port = free_port()
    proc = start_server(model, port, 32, "--max-body-bytes", "2000000", "--request-timeout", "600",
                        "--max-queue", "4096")
    samples, counts = [(0.0, rss_mb(proc.pid))], []

    async def sampler(t0: float) -> None:
        while time.perf_counter() - t0 < seconds:
            await asyncio.sleep(10)
            samples.append((time.perf_counter() - t0, rss_mb(proc.pid)))
            print(f"{samples[-1][0]:5.0f} s: RSS {samples[-1][1]:.0f} MB", flush=True)

    async def run() -> None:
        t0 = time.perf_counter()
        minutes = max(int(seconds // 60), 1)
        task = asyncio.create_task(sampler(t0))
        for _ in range(minutes):  # one minute of load at a time, to count requests per minute
            result = await load(port, items, 30, seconds / minutes, big, 2)
            counts.append(result)
        await task

    try:
        asyncio.run(run())
    finally:
        proc.terminate()
        proc.wait(60)
    rss = [r for _, r in samples]
    half = [r for t, r in samples if t >= seconds / 2]
    first, last = counts[0]["requests_per_second"], counts[-1]["requests_per_second"]
    print(f"soak {seconds:.0f} s: RSS start {rss[0]:.0f} MB, peak {max(rss):.0f} MB, end {rss[-1]:.0f} MB; second half "
          f"{min(half):.0f}-{max(half):.0f} MB; {first:.1f} req/s in the first minute, {last:.1f} in the last; errors "
          f"{sum(c['errors'] for c in counts)}", flush=True)
    return {"rss_mb": samples, "rss_start_mb": rss[0], "rss_peak_mb": max(rss), "rss_end_mb": rss[-1],
            "second_half_mb": [min(half), max(half)], "requests_per_minute": [c["requests"] for c in counts],
            "errors": sum(c["errors"] for c in counts), "ratio": last / first}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "runs/quickstart" if Path("runs/quickstart/model.safetensors").exists() else "minilm-l6"
    parser.add_argument("--model", default=default)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--mixed-seconds", type=float, default=20.0)
    parser.add_argument("--soak", type=float, default=0.0, help="only the mixed load for this many seconds, RSS "
                        "sampled every 10 s")
    args = parser.parse_args()
    cpu = cpu_banner()
    examples = load_examples(SQUAD_V1_DEV).examples[:400]
    items = [{"question": e.question, "context": e.context} for e in examples]
    if args.soak:
        long_context = " ".join(e.context for e in examples)[:20000]
        big = {"items": [{"question": e.question, "context": long_context} for e in examples[:12]], "top_k": 1}
        result = soak(args.model, items, big, args.soak)
        report({"benchmark": "serve_soak", "model": args.model, "seconds": args.soak, **result}, cpu)
        return 0 if result["errors"] == 0 else 1
    batched = measure(args.model, items, args.clients, args.seconds, 32)
    single = measure(args.model, items, args.clients, args.seconds, 1)
    ratio = batched["requests_per_second"] / single["requests_per_second"]
    print(f"micro-batching gain: x{ratio:.2f}")
    long_context = " ".join(e.context for e in examples)[:20000]
    big = {"items": [{"question": e.question, "context": long_context} for e in examples[:12]], "top_k": 1}
    alone = measure_mixed(args.model, items, big, args.mixed_seconds, True, 0)
    fair = measure_mixed(args.model, items, big, args.mixed_seconds, True, 2)
    fifo = measure_mixed(args.model, items, big, args.mixed_seconds, False, 2)
    print(f"small-request p99 under big clients: {fair['p99_ms'] / alone['p99_ms']:.2f}x alone with the fair "
          f"scheduler, {fifo['p99_ms'] / alone['p99_ms']:.2f}x first come first served")
    runs = (batched, single, alone, fair, fifo)
    report({"benchmark": "serve_load", "model": args.model, "clients": args.clients, "seconds": args.seconds,
            "micro_batched": batched, "batch_size_1": single, "mixed_small_only": alone, "mixed_fair": fair,
            "mixed_first_come": fifo, "small_p99_ratio_fair": fair["p99_ms"] / alone["p99_ms"],
            "small_p99_ratio_first_come": fifo["p99_ms"] / alone["p99_ms"], "ratio": ratio}, cpu)
    return 0 if all(r["errors"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
