"""`spanqa serve`'s settings: what `--help` shows, importable without the web stack."""

from __future__ import annotations

from dataclasses import dataclass

from spanqa.config import setting


@dataclass(frozen=True)
class ServeConfig:
    """Server limits and batching."""

    host: str = setting("127.0.0.1", "address to bind (127.0.0.1 keeps it local; 0.0.0.0 exposes it)")
    port: int = setting(8000, "TCP port")
    max_batch_size: int = setting(32, "questions per forward pass when requests are micro-batched")
    max_wait_ms: float = setting(5.0, "how long the first request of a batch waits for company")
    max_context_chars: int = setting(20000, "longest context accepted (413 above)")
    max_question_chars: int = setting(1000, "longest question accepted (413 above)")
    max_questions_per_request: int = setting(64, "items in one /v1/answer/batch request (413 above)")
    max_passages: int = setting(64, "passages in one /v1/answer request with `contexts` (413 above)")
    max_body_bytes: int = setting(1_000_000, "largest request body (413 above)")
    max_top_k: int = setting(20, "largest top_k accepted")
    max_queue: int = setting(256, "questions waiting for the model at most; more answer 503 with Retry-After")
    max_windows_per_request: int = setting(512, "model windows one request may cost (a window is max_seq_length tokens; "
                                           "413 above): the work budget, which characters only approximate")
    max_batch_windows: int = setting(64, "windows per forward pass; large requests are split across passes, shared "
                                    "round-robin with the others")
    fair_scheduling: bool = setting(True, "share forward passes round-robin between requests (false: whole requests, "
                                     "first come first served)")
    request_timeout: float = setting(60.0, "seconds a request may wait for its answers (504 after)")
    body_timeout: float = setting(10.0, "seconds a client may take to send its body (408 after)")
    limit_concurrency: int = setting(64, "requests worked on at once (the probes and /metrics not counted); more "
                                     "answer 503")
    header_timeout: float = setting(10.0, "seconds a client may take to send its request line and headers; slower or "
                                    "idle connections get 408 and are closed, and never count against the limits")
    max_connections: int = setting(2048, "open connections at most; more are closed as they arrive")
    timeout_keep_alive: int = setting(5, "seconds an idle keep-alive connection stays open (uvicorn)")
    api_key_file: str = setting("", "a file holding the key every request must send as `Authorization: Bearer KEY` "
                                "(or set SPANQA_API_KEY); /healthz, /readyz and the page stay open")
    metrics_need_key: bool = setting(False, "require the key on /metrics too (default: open, like the probes, for a "
                                     "Prometheus scraper)")
    timeout_graceful_shutdown: int = setting(30, "on SIGTERM: refuse new work, finish in-flight requests for up to this "
                                            "many seconds, then exit (uvicorn)")
    show_model_path: bool = setting(False, "show the model's filesystem path in /v1/model and the page (default: its "
                                      "folder name only)")
