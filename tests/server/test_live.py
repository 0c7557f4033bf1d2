"""`spanqa serve` as a real uvicorn process on loopback: a large request does not hold up small ones, a slow
request times out, and SIGTERM finishes in-flight work before exiting 0. Bounded in time."""

import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

CONTEXT = "The Eiffel Tower was designed by the engineering company of Gustave Eiffel and built in 1889. "


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model, *flags) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "spanqa.cli", "serve", "--model", str(model), "--port", str(port),
                             "--precision", "fp32", *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(proc.stderr.read()[-2000:])


@pytest.mark.slow
def test_small_requests_overtake_a_large_one_and_sigterm_drains_in_flight_work(tiny_model):
    proc, url = start(tiny_model, "--max-batch-windows", "4", "--max-windows-per-request", "4000",
                      "--max-body-bytes", "3000000", "--max-context-chars", "100000",
                      "--timeout-graceful-shutdown", "20")
    try:
        big = {"items": [{"question": f"When was it built {i}?", "context": CONTEXT * 400} for i in range(48)]}
        done = {}

        def send_big():
            t0 = time.perf_counter()
            done["big_status"] = httpx.post(f"{url}/v1/answer/batch", json=big, timeout=120).status_code
            done["big"] = time.perf_counter() - t0

        thread = threading.Thread(target=send_big)
        thread.start()
        deadline = time.time() + 30
        while httpx.get(f"{url}/readyz", timeout=5).json()["queued"] == 0 and time.time() < deadline:
            time.sleep(0.02)  # until the big request is queued and being answered, pass by pass
        t0 = time.perf_counter()
        small = httpx.post(f"{url}/v1/answer", json={"question": "Who designed it?", "context": CONTEXT}, timeout=120)
        small_seconds = time.perf_counter() - t0
        assert small.status_code == 200 and "big" not in done  # answered while the big one is still running
        proc.send_signal(signal.SIGTERM)  # graceful: the big request in flight still completes
        thread.join(60)
        assert done["big_status"] == 200 and small_seconds < done["big"] / 2
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_a_request_past_its_timeout_answers_504_and_the_server_lives_on(tiny_model):
    proc, url = start(tiny_model, "--request-timeout", "0.05", "--max-windows-per-request", "4000",
                      "--max-context-chars", "100000", "--max-body-bytes", "3000000")
    try:
        slow = httpx.post(f"{url}/v1/answer/batch", timeout=60,
                          json={"items": [{"question": "When?", "context": CONTEXT * 400}] * 8})
        assert slow.status_code == 504 and slow.json()["error"]["limit"] == "request_timeout"
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert "server" not in {k.lower() for k in slow.headers}  # no banner
    finally:
        proc.kill()
