"""The layering the code promises: no import cycles (imports inside functions count), inference code never
imports training code, and the reader knows no task but the reader."""

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "spanqa"
TRAINING = ("spanqa.train", "spanqa.tasks")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: spanqa modules it imports anywhere in its text}."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spanqa"):
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("spanqa")}
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                found.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_only_training_code_and_the_cli_import_training_code():
    for module, deps in import_graph().items():
        if module.startswith(TRAINING) or module == "spanqa.cli":
            continue
        assert not {d for d in deps if d.startswith(TRAINING)}, module


def test_the_engine_knows_no_task():
    for module, deps in import_graph().items():
        if module.startswith("spanqa.train"):
            assert not {d for d in deps if d.startswith("spanqa.tasks")}, module


def test_the_reader_knows_no_task_but_the_reader():
    text = (SRC / "reader.py").read_text().lower()
    assert "classifier_file" not in text and "pretrain_file" not in text and "spanqa.tasks" not in text
