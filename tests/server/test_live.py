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


@pytest.mark.slow
def test_with_a_key_every_endpoint_but_the_probes_and_page_answers_401_without_it(tiny_model, tmp_path):
    key = "k3y-" + "x" * 28
    (tmp_path / "key").write_text(key + "\n")
    (tmp_path / "key").chmod(0o600)
    proc, url = start(tiny_model, "--api-key-file", str(tmp_path / "key"))
    try:
        question = {"question": "Who designed it?", "context": CONTEXT}
        for headers in ({}, {"Authorization": "Bearer wrong-key-of-some-length"}, {"Authorization": key}):
            refused = httpx.post(f"{url}/v1/answer", json=question, headers=headers, timeout=30)
            assert refused.status_code == 401 and refused.json()["error"]["type"] == "unauthorized"
            assert refused.headers["www-authenticate"] == "Bearer"
        assert httpx.get(f"{url}/v1/model", timeout=30).status_code == 401
        ok = httpx.post(f"{url}/v1/answer", json=question, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert ok.status_code == 200 and ok.json()["answers"]
        for open_path in ("/healthz", "/readyz", "/metrics", "/"):  # probes, the scraper, the page that asks
            assert httpx.get(f"{url}{open_path}", timeout=30).status_code == 200, open_path
    finally:
        proc.kill()
    proc, url = start(tiny_model, "--api-key-file", str(tmp_path / "key"), "--metrics-need-key")
    try:
        assert httpx.get(f"{url}/metrics", timeout=30).status_code == 401
        assert httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code == 200
    finally:
        proc.kill()


@pytest.mark.slow
def test_half_open_connections_are_timed_out_and_never_lock_out_probes_or_answers(tiny_model):
    proc, url = start(tiny_model, "--header-timeout", "2", "--limit-concurrency", "64")
    port = int(url.rsplit(":", 1)[1])
    stalled = []
    try:
        for _ in range(64):  # half a request line each, then silence
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /v1/answer HTT")
            stalled.append(s)
        time.sleep(0.3)
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        answer = httpx.post(f"{url}/v1/answer", json={"question": "Who designed it?", "context": CONTEXT}, timeout=30)
        assert answer.status_code == 200  # the stalled sockets hold no share of the work limit
        time.sleep(2.5)  # past the header deadline: each got 408 in the error contract and was closed
        for s in stalled:
            s.settimeout(5)
            reply = s.recv(4096).decode()
            assert reply.startswith("HTTP/1.1 408") and '"limit": "header_timeout"' in reply
            assert s.recv(4096) == b""  # and closed
    finally:
        for s in stalled:
            s.close()
        proc.kill()
