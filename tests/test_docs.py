"""Every example in README.md and docs/ runs, or says why it cannot.

A fenced `python` or `bash` block is an example. It runs unless the line right above it is an HTML comment
`<!-- not run: REASON -->`. A page's examples run in order in one sandbox folder, its Python blocks in one
namespace; a bash block's commands (a line with its backslash continuations, `#` comments dropped) must each be
a `spanqa` command. The sandbox holds what a reader of the docs has beside a checkout:
- `src/spanqa/assets/` and `recipes/`: this checkout's;
- `runs/quickstart/`: a tiny reader trained on the fixtures (the real one takes 8 minutes to train);
- `passage.txt`: a passage for `spanqa ask --context-file`.

Commands run as written, with limits appended where the written command would run for minutes or hours:
training commands get `--max-steps 2 --max-train-samples 16 --max-eval-samples 16 --report-to none`, `predict`
`--max-samples 40`, `export` `--max-eval-samples 20`; `serve` starts on a free port, must answer `/readyz` and
a question, and is then stopped.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest


ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
TRAINING = ("train", "distill", "pretrain", "classify")
LIMITS = {
    **{c: ["--max-steps", "2", "--max-train-samples", "16", "--max-eval-samples", "16", "--report-to", "none"]
       for c in TRAINING},
    "predict": ["--max-samples", "40"],
    "export": ["--max-eval-samples", "20"],
}
PASSAGE = ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. It is named after the "
           "engineer Gustave Eiffel, whose company designed and built the tower for the 1889 World's Fair.")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    not_run: str | None  # the reason, when the block is marked as not run

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The page's `python` and `bash` fenced blocks, with the not-run reason written above each."""
    lines, found, i = page.read_text().splitlines(), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        close = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        marker = NOT_RUN.search(lines[i - 1]) if i else None
        if m.group(1) in ("python", "bash"):
            found.append(Block(page, i + 1, m.group(1), "\n".join(lines[i + 1:close]) + "\n",
                               marker.group(1) if marker else None))
        i = close + 1
    return found


def commands(code: str) -> list[str]:
    """The shell commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\s*\\\n\s*", " ", code)
    return [line.split(" #")[0].strip() for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_every_example_runs_or_says_why_not():
    problems = []
    for page in PAGES:
        for b in blocks(page):
            if b.not_run is not None:
                if not b.not_run:
                    problems.append(f"{b.where}: 'not run' without a reason")
                continue
            if b.lang == "bash":
                problems += [f"{b.where}: not a spanqa command: {c}" for c in commands(b.code)
                             if not c.startswith("spanqa ")]
    assert problems == []


def test_the_docs_have_examples_that_run():
    runnable = [b for page in PAGES for b in blocks(page) if b.not_run is None]
    assert len(runnable) >= 20 and {b.lang for b in runnable} == {"python", "bash"}


def test_readme_is_a_short_front_door():
    text = (ROOT / "README.md").read_text()
    cells = [c for line in text.splitlines() if line.startswith("|") for c in line.split("|")]
    assert len(text.splitlines()) < 200 and max(map(len, cells)) <= 200
    assert "../shared" not in text and not re.search(r"seed \d{3}", text)
    links = re.findall(r"\]\((docs/[^)#]+)(?:#([^)]+))?\)", text)
    assert links and [f for f, _ in links if not (ROOT / f).exists()] == []
    for page, anchor in links:  # anchors as MkDocs makes them from headings
        headings = re.findall(r"^#+ (.+)$", (ROOT / page).read_text(), re.M)
        slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
        assert not anchor or anchor in slugs, (page, anchor)


def test_the_block_reader_sees_markers_and_continuations(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n<!-- not run: needs a GPU -->\n```bash\nspanqa train \\\n  --x 1  # why\n```\n"
                    "```python\nprint(1)\n```\n```yaml\na: 1\n```\n")
    bash, python = blocks(page)
    assert (bash.not_run, bash.line, python.not_run, python.lang) == ("needs a GPU", 3, None, "python")
    assert commands(bash.code) == ["spanqa train --x 1"]


def sandbox(tmp_path: Path, reader: Path) -> Path:
    (tmp_path / "src" / "spanqa").mkdir(parents=True)
    (tmp_path / "src" / "spanqa" / "assets").symlink_to(ROOT / "src" / "spanqa" / "assets")
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    shutil.copytree(reader, tmp_path / "runs" / "quickstart")
    (tmp_path / "passage.txt").write_text(PASSAGE + "\n")
    return tmp_path


def spanqa_argv(command: str) -> list[str]:
    args = shlex.split(command)[1:]
    return [sys.executable, "-m", "spanqa.cli", *args, *LIMITS.get(args[0], [])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, body: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read()
    except OSError:
        return 0, b""


def serve(argv: list[str], cwd: Path, env: dict) -> None:
    """Start `spanqa serve` on a free port, ask it a question, stop it."""
    port = free_port()
    server = subprocess.Popen([*argv, "--port", str(port)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while get(f"http://127.0.0.1:{port}/readyz")[0] != 200:
            assert server.poll() is None and time.monotonic() < deadline, server.stdout.read() if server.poll() else ""
            time.sleep(0.5)
        status, body = get(f"http://127.0.0.1:{port}/v1/answer",
                           {"question": "Whose company designed the tower?", "context": PASSAGE})
        assert status == 200 and json.loads(body)["answers"], body
    finally:
        server.terminate()
        server.wait(timeout=60)


def run_bash(block: Block, cwd: Path, env: dict) -> None:
    for command in commands(block.code):
        argv = spanqa_argv(command)
        if argv[3] == "serve":
            serve(argv, cwd, env)
            continue
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{block.where}: {command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def run_python(block: Block, namespace: dict) -> None:
    exec(compile(block.code, block.where, "exec"), namespace)  # noqa: S102 - the docs' own examples


PAGES_WITH_EXAMPLES = [p for p in PAGES if any(b.not_run is None for b in blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_examples_of_a_page_run(page, tmp_path, monkeypatch, tiny_reader):
    cwd = sandbox(tmp_path, tiny_reader)
    monkeypatch.chdir(cwd)
    env = {**os.environ, "SPANQA_CACHE": str(tmp_path / "cache")}
    namespace: dict = {}
    for block in blocks(page):
        if block.not_run is None:
            run_python(block, namespace) if block.lang == "python" else run_bash(block, cwd, env)


def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: every page in the nav, every link and anchor resolves, every API name exists."""
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "reference" / "api" / "index.html").read_text().count("Reader.load") >= 1
