"""The HTTP API in-process: answers, limits, bad input, micro-batching."""

import asyncio
import time

import numpy as np
import pytest
from conftest import V1
from fastapi.testclient import TestClient

from spanqa.reader import Reader
from spanqa.server.app import ServeConfig, create_app
from spanqa.server.scheduler import MicroBatcher

LOCAL = "http://127.0.0.1:8000"  # the server is bound to loopback: it answers only requests for a local host
CONTEXT = "The Eiffel Tower was designed by the engineering company of Gustave Eiffel and built in 1889."


@pytest.fixture(scope="module")
def reader(tiny_model):
    return Reader.load(str(tiny_model), device="cpu")


@pytest.fixture()
def client(reader):
    config = ServeConfig(max_context_chars=500, max_question_chars=100, max_questions_per_request=3,
                         max_body_bytes=4000, max_top_k=5)
    with TestClient(create_app(reader, config), base_url=LOCAL) as c:
        yield c


def test_answer_is_cut_from_the_context(client):
    r = client.post("/v1/answer", json={"question": "Who designed it?", "context": CONTEXT, "top_k": 3})
    assert r.status_code == 200
    answers = r.json()["answers"]
    assert 1 <= len(answers) <= 3
    for a in answers:
        assert a["text"] == CONTEXT[a["start"] : a["end"]]
    assert answers[0]["score"] >= answers[-1]["score"]


def test_batch_answers_in_input_order(client, reader):
    items = [{"question": "When was it built?", "context": CONTEXT},
             {"question": "Which company?", "context": "Paris is in France. " * 3}]
    r = client.post("/v1/answer/batch", json={"items": items, "top_k": 1})
    assert r.status_code == 200
    got = [res["answers"][0]["text"] for res in r.json()["results"]]
    assert got == [reader.answer(i["question"], i["context"])[0].text for i in items]


def test_answers_over_several_passages_name_their_passage(client, reader):
    passages = ["Paris is in France.", CONTEXT, "The river runs past the mill."]
    r = client.post("/v1/answer", json={"question": "Who designed it?", "contexts": passages, "top_k": 4})
    assert r.status_code == 200
    answers = r.json()["answers"]
    want = reader.answer("Who designed it?", passages, top_k=4)
    assert [(a["passage"], a["start"], a["end"]) for a in answers] == [(a.passage, a.start, a.end) for a in want]
    for a in answers:
        assert a["text"] == passages[a["passage"]][a["start"] : a["end"]]
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)


def test_too_many_passages_and_ambiguous_context_fields_are_refused(client):
    both = client.post("/v1/answer", json={"question": "Who?", "context": CONTEXT, "contexts": [CONTEXT]})
    assert both.status_code == 422 and "exactly one of" in both.json()["error"]["message"]
    neither = client.post("/v1/answer", json={"question": "Who?"})
    assert neither.status_code == 422
    blank = client.post("/v1/answer", json={"question": "Who?", "contexts": ["ok", " "]})
    assert blank.status_code == 422 and "passage 1 is blank" in blank.json()["error"]["message"]
    long = client.post("/v1/answer", json={"question": "Who?", "contexts": ["ok", "x" * 501]})
    assert long.status_code == 413 and long.json()["error"]["limit"] == "max_context_chars"


def test_health_and_model_info(client):
    assert client.get("/healthz").json()["status"] == "ok"
    info = client.get("/v1/model").json()
    assert info["settings"]["data"]["max_seq_length"] == 384 and "batching" in info
    assert client.get("/openapi.json").status_code == 200
    assert "<form" in client.get("/").text


@pytest.mark.parametrize(
    "body, status, needle",
    [
        ('{"question": "x", "context": ', 400, "invalid_json"),
        ('[1, 2]', 422, "invalid_request"),
        ('{"question": 3, "context": "abc"}', 422, "question"),
        ('{"question": "", "context": "abc"}', 422, "question"),
        ('{"question": "   ", "context": "abc"}', 422, "must not be blank"),
        ('{"question": "q?"}', 422, "context"),
        ('{"question": "q?", "context": "abc", "top_k": 0}', 422, "top_k"),
        ('{"question": "q?", "context": "abc", "top_k": 9}', 422, "max_top_k"),
        ('{"question": "q?", "context": "' + "a" * 600 + '"}', 413, "max_context_chars"),
        ('{"question": "' + "q" * 150 + '", "context": "abc"}', 413, "max_question_chars"),
        ('{"question": "q?", "context": "' + "a" * 5000 + '"}', 413, "max_body_bytes"),
    ],
)
def test_bad_requests_get_json_errors_and_the_server_stays_up(client, body, status, needle):
    r = client.post("/v1/answer", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status and needle in r.text
    assert "error" in r.json() and r.json()["error"]["message"]
    assert client.post("/v1/answer", json={"question": "q?", "context": CONTEXT}).status_code == 200


@pytest.mark.parametrize("body, headers", [
    (b'{"question": "\xff\xfe", "context": "abc"}', {}),                      # not UTF-8
    (b'{"question": "\xc0\xaf", "context": "abc"}', {}),                      # an overlong UTF-8 sequence
    ('{"question": "caf\u00e9?", "context": "abc"}'.encode("latin-1"), {"Content-Type": "application/json; charset=latin-1"}),
    (b'{"question": "q?", "context": "abc", "top_k": ' + b"9" * 5000 + b"}", {}),  # a 5,000-digit number
    (b"[" * 100000 + b"]" * 100000, {}),                                       # JSON nested 100,000 deep
], ids=["not-utf8", "overlong-utf8", "latin-1", "5000-digits", "deep-nesting"])
def test_unreadable_bodies_answer_400_in_the_error_contract(reader, body, headers):
    with TestClient(create_app(reader, ServeConfig(max_body_bytes=1_000_000)), base_url=LOCAL) as client:
        r = client.post("/v1/answer", content=body, headers={"Content-Type": "application/json", **headers})
    assert r.status_code == 400, r.text[:300]
    error = r.json()["error"]
    assert error["type"] in ("invalid_body", "invalid_json") and error["message"] and "detail" not in r.json()


def test_unknown_routes_and_methods_answer_in_the_error_contract(client):
    for method, path, status in (("GET", "/nope", 404), ("HEAD", "/healthz", 405), ("OPTIONS", "/v1/answer", 405),
                                 ("GET", "/v1/answer", 405)):
        r = client.request(method, path)
        assert r.status_code == status
        if method != "HEAD":
            assert r.json()["error"]["type"] in ("not_found", "method_not_allowed") and "detail" not in r.json()


@pytest.mark.parametrize("top_k", ['"3"', "2.0", "true"])
def test_top_k_must_be_a_json_integer(client, top_k):
    body = '{"question": "q?", "context": "abc", "top_k": ' + top_k + "}"
    r = client.post("/v1/answer", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "top_k"


def test_a_bad_field_is_named_by_its_json_path(client):
    r = client.post("/v1/answer/batch", json={"items": [{"question": "q?", "context": "c"}, {"question": 5, "context": "c"}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "items.1.question"


def test_an_internal_error_gives_a_request_id_and_no_internals(reader, caplog):
    class Broken:
        name, info, allow_null, data, decode, precision = reader.name, reader.info, False, reader.data, reader.decode, "fp32"

        def answer_batch(self, pairs, top_k):
            raise RuntimeError("/secret/path/model.safetensors is corrupt")

    with TestClient(create_app(Broken()), raise_server_exceptions=False, base_url=LOCAL) as c:
        r = c.post("/v1/answer", json={"question": "q?", "context": CONTEXT})
    error = r.json()["error"]
    assert r.status_code == 500 and error["type"] == "internal_error" and len(error["request_id"]) == 12
    assert "secret" not in r.text and "RuntimeError" not in r.text
    assert error["request_id"] in caplog.text and "/secret/path" in caplog.text  # the log keeps the details


def test_a_context_without_tokens_is_a_clear_422_and_fails_only_its_item(client):
    empty = "\u200b\u0301\u200d"  # zero-width characters and a combining mark: no tokens
    r = client.post("/v1/answer", json={"question": "Who?", "context": empty})
    assert r.status_code == 422 and "no text" in r.json()["error"]["message"]
    r = client.post("/v1/answer/batch", json={"items": [{"question": "Who?", "context": empty},
                                                         {"question": "Who designed it?", "context": CONTEXT}]})
    first, second = r.json()["results"]
    assert r.status_code == 200 and first["error"]["field"] == "items.0.context" and second["answers"]


def test_a_loopback_server_refuses_other_host_headers(client):
    r = client.get("/healthz", headers={"Host": "attacker.example:8000"})  # DNS rebinding
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_host"
    assert client.get("/healthz", headers={"Host": "localhost:8000"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "[::1]:8000"}).status_code == 200


def test_a_full_queue_answers_503_with_retry_after_and_readyz_says_so(reader):
    with TestClient(create_app(reader, ServeConfig(max_queue=0)), base_url=LOCAL) as c:
        r = c.post("/v1/answer", json={"question": "Who?", "context": CONTEXT})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and r.json()["error"]["limit"] == "max_queue"
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "saturated"
    with TestClient(create_app(reader, ServeConfig()), base_url=LOCAL) as c:
        assert c.get("/readyz").json() == {"status": "ready", "queued": 0, "max_queue": 256}


def test_prometheus_metrics_count_requests_and_batches(client):
    client.post("/v1/answer", json={"question": "Who designed it?", "context": CONTEXT})
    client.post("/v1/answer", json={"question": "", "context": CONTEXT})
    text = client.get("/metrics").text
    assert 'spanqa_requests_total{route="/v1/answer",status="200"} 1.0' in text
    assert 'spanqa_requests_total{route="/v1/answer",status="422"} 1.0' in text
    assert "spanqa_request_seconds_bucket" in text and "spanqa_queue_questions 0.0" in text
    assert "spanqa_batch_questions_count 1.0" in text and "spanqa_questions_total 1.0" in text


def test_docs_are_served_from_packaged_assets_and_the_model_path_stays_private(client, reader):
    page = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    name = client.get("/v1/model").json()["name"]
    assert name == reader.name.rstrip("/").split("/")[-1] and "/" not in name
    with TestClient(create_app(reader, ServeConfig(show_model_path=True)), base_url=LOCAL) as c:
        assert c.get("/v1/model").json()["name"] == reader.name


def test_window_counts_are_what_the_windows_are(reader):
    from spanqa.data import load_examples
    from spanqa.features import build_features

    examples = load_examples(V1).examples[:40]
    features = build_features(examples, reader.tokenizer, reader.data)
    built = np.bincount(features.example_index, minlength=len(examples)).tolist()
    assert reader.count_windows([(e.question, e.context) for e in examples]) == built
    assert reader.count_windows([("q?", [examples[0].context, examples[1].context])]) == [built[0] + built[1]]


def test_the_work_budget_is_counted_in_windows(reader):
    with TestClient(create_app(reader, ServeConfig(max_windows_per_request=2)), base_url=LOCAL) as c:
        assert c.post("/v1/answer", json={"question": "Who?", "context": CONTEXT}).status_code == 200
        r = c.post("/v1/answer", json={"question": "Who?", "context": CONTEXT * 40})
        assert r.status_code == 413 and r.json()["error"]["limit"] == "max_windows_per_request"


def test_a_request_that_waits_too_long_answers_504(reader):
    class Slow:
        name, info, allow_null, data, decode, precision = reader.name, reader.info, False, reader.data, reader.decode, "fp32"

        def answer_batch(self, pairs, top_k):
            time.sleep(0.5)
            return [[] for _ in pairs]

    with TestClient(create_app(Slow(), ServeConfig(request_timeout=0.1)), base_url=LOCAL) as c:
        r = c.post("/v1/answer", json={"question": "Who?", "context": CONTEXT})
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout"


def test_a_body_that_never_arrives_answers_408():
    from spanqa.server.app import BodyLimit

    sent = []

    async def scenario():
        async def app(scope, receive, send):  # never reached
            raise AssertionError

        async def receive():
            await asyncio.sleep(10)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "headers": [], "method": "POST", "path": "/v1/answer"}
        await BodyLimit(app, 1000, timeout=0.05)(scope, receive, send)

    asyncio.run(scenario())
    assert sent[0]["status"] == 408 and b'"body_timeout"' in sent[1]["body"]


def test_too_many_questions_per_request(client):
    items = [{"question": "q?", "context": "abc"}] * 4
    r = client.post("/v1/answer/batch", json={"items": items})
    assert r.status_code == 413 and r.json()["error"]["limit"] == "max_questions_per_request"


def test_micro_batcher_groups_concurrent_requests_and_keeps_order():
    calls = []

    def answer_batch(pairs, top_k):
        calls.append(len(pairs))
        return [[f"{q}|{c}"] * top_k for q, c in pairs]

    async def scenario():
        batcher = MicroBatcher(answer_batch, max_batch_size=8, max_wait_ms=50)
        jobs = [batcher.submit([(f"q{i}", "c")], 1) for i in range(12)]
        results = await asyncio.gather(*jobs)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert [r[0][0] for r in results] == [f"q{i}|c" for i in range(12)]
    assert sum(calls) == 12 and len(calls) < 12 and max(calls) <= 8


def test_a_failing_question_fails_its_own_request_only():
    def answer_batch(pairs, top_k):
        if any(q == "bad" for q, _ in pairs):
            raise RuntimeError("boom")
        return [[f"{q}|{c}"] for q, c in pairs]

    async def scenario():
        batcher = MicroBatcher(answer_batch, max_batch_size=8, max_wait_ms=20)
        results = await asyncio.gather(batcher.submit([("good", "c")], 1), batcher.submit([("bad", "c")], 1),
                                       return_exceptions=True)
        later = await batcher.submit([("again", "c")], 1)  # the worker lives on
        await batcher.stop()
        return results, later

    (good, bad), later = asyncio.run(scenario())
    assert good == [["good|c"]] and isinstance(bad, RuntimeError) and later == [["again|c"]]


def test_a_large_request_cannot_starve_small_ones():
    """Round-robin by windows: a 6-question x 20-window request and a 1-question request sent just after it."""
    order = []

    def answer_batch(pairs, top_k):
        time.sleep(0.01 * len(pairs))
        order.extend(q for q, _ in pairs)
        return [[q] for q, _ in pairs]

    async def scenario():
        batcher = MicroBatcher(answer_batch, max_batch_size=32, max_wait_ms=5, max_batch_windows=32)
        done = []

        async def big():
            await batcher.submit([(f"big{i}", "c") for i in range(6)], 1, costs=[20] * 6)
            done.append("big")

        async def small():
            await asyncio.sleep(0.001)
            await batcher.submit([("small", "c")], 1, costs=[2])
            done.append("small")

        await asyncio.gather(big(), small())
        await batcher.stop()
        return done

    done = asyncio.run(scenario())
    assert done == ["small", "big"]
    assert order.index("small") <= 1  # in the first or second batch, not after the big request's six


def test_metrics_keep_counting_past_the_batchers_recent_sizes():
    from spanqa.server.app import ServerMetrics

    metrics = ServerMetrics()
    batcher = MicroBatcher(lambda pairs, top_k: [], on_batch=metrics.batch_done)
    for _ in range(1005):  # stats.sizes keeps the last 1,000 only
        batcher._record(2, 0.0)
    text = metrics.render(batcher).decode()
    assert "spanqa_questions_total 2010.0" in text and "spanqa_batch_questions_count 1005.0" in text


def test_heavy_passes_are_spaced_out_while_small_requests_wait():
    """Two large requests bank credit at the same rate; their questions must not fill back-to-back passes."""
    passes = []

    def answer_batch(pairs, top_k):
        time.sleep(0.002)
        passes.append({q[0] for q, _ in pairs})  # "b": a 10-window question, "s": a one-window one
        return [[q] for q, _ in pairs]

    async def scenario():
        batcher = MicroBatcher(answer_batch, max_batch_size=32, max_wait_ms=1, max_batch_windows=16)
        big_done = asyncio.Event()

        async def small(i):
            while not big_done.is_set():
                await batcher.submit([(f"s{i}", "c")], 1, costs=[1])

        smalls = [asyncio.create_task(small(i)) for i in range(6)]
        await asyncio.gather(*(batcher.submit([(f"b{n}{i}", "c") for i in range(4)], 1, costs=[10] * 4)
                               for n in "xy"))
        big_done.set()
        await asyncio.gather(*smalls)
        await batcher.stop()

    asyncio.run(scenario())
    heavy = ["b" in p for p in passes]
    assert sum(heavy) == 8 and not any(a and b for a, b in zip(heavy, heavy[1:]))


def test_a_key_is_required_everywhere_but_the_probes_and_the_page(reader):
    key = "unit-key-" + "q" * 20
    with TestClient(create_app(reader, ServeConfig(), api_key=key), base_url=LOCAL) as c:
        body = {"question": "Who designed it?", "context": "Gustave Eiffel designed the tower."}
        missing = c.post("/v1/answer", json=body)
        assert missing.status_code == 401 and missing.json()["error"]["type"] == "unauthorized"
        assert c.post("/v1/answer", json=body, headers={"Authorization": f"Bearer {key}x"}).status_code == 401
        assert c.post("/v1/answer", json=body, headers={"Authorization": f"bearer {key}"}).status_code == 200
        assert [c.get(p).status_code for p in ("/healthz", "/readyz", "/metrics", "/", "/v1/model")] == \
            [200, 200, 200, 200, 401]


def test_read_api_key_takes_the_file_then_the_environment_and_refuses_short_keys(tmp_path, monkeypatch):
    from spanqa.errors import SpanqaError
    from spanqa.server.guard import KEY_ENV, read_api_key

    monkeypatch.delenv(KEY_ENV, raising=False)
    assert read_api_key("") == ""
    monkeypatch.setenv(KEY_ENV, "from-the-environment-1234")
    assert read_api_key("") == "from-the-environment-1234"
    (tmp_path / "k").write_text("from-the-file-12345678\nignored\n")
    assert read_api_key(str(tmp_path / "k")) == "from-the-file-12345678"
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(SpanqaError, match="3 characters; use at least 16"):
        read_api_key(str(tmp_path / "short"))
    with pytest.raises(SpanqaError, match="no such file"):
        read_api_key(str(tmp_path / "none"))


def test_the_work_limit_answers_503_in_the_contract_and_never_counts_the_probes(reader):
    from spanqa.server.guard import Door

    async def hold(scope, receive, send):  # a request being worked on
        await asyncio.sleep(0.2)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    from spanqa.server.app import _error

    door = Door(hold, "", 1, False, _error)
    sent = []

    async def send(message):
        sent.append(message)

    async def go():
        scope = {"type": "http", "path": "/v1/answer", "headers": []}
        first = asyncio.create_task(door(scope, None, send))
        await asyncio.sleep(0.05)
        await door(scope, None, send)  # over the limit while the first is in flight
        await door({**scope, "path": "/healthz"}, None, send)  # a probe: never refused
        await first

    asyncio.run(go())
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert statuses == [503, 200, 200]
