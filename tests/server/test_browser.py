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


@pytest.fixture(scope="module")
def server(tiny_model):
    import uvicorn

    from spanqa.reader import Reader
    from spanqa.server.app import ServeConfig, create_app

    reader = Reader.load(str(tiny_model), device="cpu")
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(reader, ServeConfig(port=port)), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", reader
    srv.should_exit = True
    thread.join(10)


@pytest.mark.slow
def test_page_highlights_the_answer(server):
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which("chromium") and not shutil.os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    url, reader = server
    want = reader.answer("Who designed the tower?", CONTEXT, top_k=3)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
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
