"""The web page in headless Chromium: type a question, click, see the answer highlighted."""

import shutil
import socket
import threading
import time

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CONTEXT = "The Eiffel Tower was designed by the engineering company of Gustave Eiffel and built in 1889."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(app, port: int):
    """uvicorn serving `app` on loopback in a thread; returns a function that stops it."""
    import uvicorn

    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)

    def stop():
        srv.should_exit = True
        thread.join(10)

    return stop


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    from retrieval.collection_files import make_collection

    from spanqa.artifacts import IndexInfo
    from spanqa.reader import Reader
    from spanqa.retrieval.index import CollectionIndex
    from spanqa.server.app import ServeConfig, create_app

    reader = Reader.load(str(tiny_model), device="cpu")
    root = tmp_path_factory.mktemp("collection")
    CollectionIndex.build([str(make_collection(root))], root / "index",
                          IndexInfo(retrievers=["bm25"], default_retriever="bm25", passage_tokens=24))
    port = _free_port()
    stop = _run(create_app(reader, ServeConfig(port=port), root / "index"), port)
    yield f"http://127.0.0.1:{port}", reader
    stop()


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"])


def _playwright():
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which("chromium") and not shutil.os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    return playwright


@pytest.mark.slow
def test_page_highlights_the_answer(server):
    playwright = _playwright()
    url, reader = server
    want = reader.answer("Who designed the tower?", CONTEXT, top_k=3)
    with playwright.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page()
        page.goto(url + "/")
        page.fill("#context", CONTEXT)
        page.fill("#question", "Who designed the tower?")
        page.click("#ask")
        page.wait_for_selector("#highlight", timeout=20000)
        assert page.inner_text("#highlight") == want[0].text
        assert page.inner_text("#answer") == want[0].text
        assert page.locator("#alternatives li").count() == len(want) - 1
        page.fill("#context", "")
        page.click("#ask")
        assert "passage" in page.inner_text("#error")
        browser.close()


@pytest.mark.slow
def test_the_collection_search_shows_quoted_answers_with_their_sources(server):
    playwright = _playwright()
    url, _ = server
    with playwright.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#collection", state="visible", timeout=20000)
        assert "5 documents" in page.inner_text("#index-info")
        page.fill("#search", "Who won the Nobel Prize in 1903?")
        page.click("#search-ask")
        page.wait_for_selector("#found li", timeout=20000)
        first = page.locator("#found li").first
        assert first.locator("mark").text_content() == first.locator("strong").text_content()
        assert "characters" in first.locator(".source").inner_text()
        page.fill("#search", "zzzz qqqq")
        page.click("#search-ask")
        page.wait_for_function("document.getElementById('search-error').textContent.includes('No answer')")
        browser.close()


@pytest.mark.slow
def test_a_keyed_server_s_page_asks_for_the_key_once_and_keeps_it_for_the_tab(server):
    from spanqa.server.app import ServeConfig, create_app

    playwright = _playwright()
    _, reader = server
    key, port = "page-key-" + "z" * 24, _free_port()
    stop = _run(create_app(reader, ServeConfig(port=port), api_key=key), port)
    try:
        with playwright.sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#key-form:not([hidden])", timeout=20000)  # /v1/model answered 401
            page.fill("#key", key)
            page.click("#use-key")
            page.wait_for_function("document.getElementById('model').textContent.startsWith('Model:')",
                                   timeout=20000)
            page.fill("#context", CONTEXT)
            page.fill("#question", "Who designed the tower?")
            page.click("#ask")
            page.wait_for_selector("#highlight", timeout=20000)
            page.reload()  # the same tab keeps the key: no prompt again
            page.wait_for_function("document.getElementById('model').textContent.startsWith('Model:')",
                                   timeout=20000)
            assert page.locator("#key-form").is_hidden()
            browser.close()
    finally:
        stop()
