"""The layering the code promises: no import cycles (imports inside functions count), no module imports one
from a layer above its own, inference code never imports training code, and the reader knows no task but the
reader. README's layout names every top-level module and folder."""

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "spanqa"
TRAINING = ("spanqa.train", "spanqa.tasks")
README = Path(__file__).parents[1] / "README.md"

# Lowest first: a module may import from its own layer and the layers below, never from one above. A module's
# layer is that of the longest name here that is it or a package holding it.
LAYERS = [
    ("shared", ["spanqa.errors", "spanqa.files", "spanqa.display", "spanqa.memory", "spanqa.precision",
                "spanqa.config", "spanqa.bundle"]),
    ("data", ["spanqa.data", "spanqa.tokenization", "spanqa.batching", "spanqa.metrics"]),
    ("features and models", ["spanqa.features", "spanqa.decode", "spanqa.models"]),
    ("running models", ["spanqa.inference", "spanqa.evaluation", "spanqa.artifacts"]),
    ("retrieval", ["spanqa.retrieval"]),
    ("training engine", ["spanqa.train"]),
    ("answering", ["spanqa.answering"]),
    ("reader", ["spanqa.reader"]),
    ("serving", ["spanqa.server", "spanqa.integrations"]),
    ("tasks", ["spanqa.tasks"]),
    ("commands", ["spanqa.commands", "spanqa.cli", "spanqa"]),
]


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


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the longest listed name that is `module` or a package holding it."""
    best, rank = -1, None
    for i, (_, names) in enumerate(LAYERS):
        for name in names:
            holds = name != "spanqa" and module.startswith(name + ".")  # the package itself is only itself
            if (module == name or holds) and len(name) > best:
                best, rank = len(name), i
    return rank


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
            for m, deps in sorted(graph.items()) for d in sorted(deps) if layer_of(d) > layer_of(m)]


def test_every_module_has_a_layer():
    assert [m for m in import_graph() if layer_of(m) is None] == []


def test_no_module_imports_from_a_layer_above_its_own():
    assert upward_imports(import_graph()) == []


def test_an_import_up_a_layer_is_found():
    graph = {"spanqa.files": {"spanqa.reader"}, "spanqa.reader": {"spanqa.files"}}
    assert upward_imports(graph) == ["spanqa.files (shared) imports spanqa.reader (reader)"]


def test_module_basenames_are_distinct():
    names = [p.stem for p in SRC.rglob("*.py") if p.stem != "__init__"]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_readme_layout_names_every_top_level_module_and_folder():
    text = README.read_text()
    layout = text[text.index("## Layout"):].split("```")[1]
    entries = [p.name for p in SRC.iterdir() if p.name not in ("__init__.py", "__pycache__", "assets")
               and (p.suffix == ".py" or (p / "__init__.py").exists())]
    missing = [e for e in entries if (e if e.endswith(".py") else e + "/") not in layout]
    assert missing == []


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
