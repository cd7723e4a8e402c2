"""The house's shape, proved from the code: every import points down the layers, rooms import each
other in no circle, scoring stays pure and the Locust child imports only what it needs.

LAYERS is the one definition of the order. The import graph in docs/architecture.md is generated
from the same parse; print it again after a change with

    .venv/bin/python -m tests.test_architecture
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "loadkit"
DOC = ROOT / "docs" / "architecture.md"

# Rooms are loadkit's top-level packages and modules, from the top floor down. A room may import any
# room on a lower floor, never one on its own floor or above. "loadkit" is the package's face
# (loadkit/__init__.py: the version, nothing else).
LAYERS: list[tuple[str, ...]] = [
    ("__main__",),
    ("cli",),
    ("report",),
    ("gameday",),
    ("webhook", "chaos"),
    ("analysis", "config"),
    ("load", "prometheus", "sandbox", "store"),
    ("scoring",),
    ("models", "yaml_errors"),
    ("units", "errors", "safety", "httpcalls", "loadkit"),
]
FLOOR = {room: floor for floor, rooms in enumerate(LAYERS) for room in rooms}

# What "pure" allows scoring to import besides models and units: arithmetic, not I/O or a clock.
PURE = {"__future__", "collections", "dataclasses", "enum", "math", "numpy", "operator", "scipy", "statistics",
        "typing"}
# Heavy or process-wide modules the Locust child must not pay for (it imports locust and gevent itself).
NOT_IN_THE_LOCUST_CHILD = {"pydantic", "numpy", "scipy", "yaml", "httpx", "rich", "click"}
PLUGIN = "loadkit.load.locust_plugin"
# The Locust child's own modules: only they import locust or gevent, and only the plugin (or one another) imports them.
CHILD = {PLUGIN, "loadkit.load._collector", "loadkit.load._guard", "loadkit.load._open_model"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. loadkit.cli._execute
    target: str  # the imported module, e.g. loadkit.analysis
    line: int
    top_level: bool  # at module level (runs at import), not inside a function

    @property
    def where(self) -> str:
        return f"{self.module.replace('.', '/')}.py:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "loadkit"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    """Every import in the file, at module level and in functions (TYPE_CHECKING ones too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    top = {id(n) for n in _top_level(tree)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, id(node) in top)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # `from loadkit import cli` imports the room cli, not the face
                sub = f"{base}.{alias.name}"
                yield Import(module, sub if sub in known else base, node.lineno, id(node) in top)


def _top_level(tree: ast.AST) -> Iterator[ast.AST]:
    """Statements that run at import: everything outside function bodies (class bodies run, too) and
    outside `if TYPE_CHECKING:`."""
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def all_imports() -> list[Import]:
    found = modules()
    return [i for module, path in found.items() for i in imports_of(module, path, set(found))]


def room_graph(imports: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {room_of(m): set() for m in modules()}
    for i in imports:
        if i.target.split(".")[0] == "loadkit" and room_of(i.target) != room_of(i.module):
            graph[room_of(i.module)].add(room_of(i.target))
    return graph


def arrows_that_do_not_point_down(imports: list[Import]) -> list[str]:
    bad = []
    for i in imports:
        if i.target.split(".")[0] != "loadkit":
            continue
        source, target = room_of(i.module), room_of(i.target)
        if source == target or source not in FLOOR or target not in FLOOR:
            continue
        if FLOOR[target] <= FLOOR[source]:
            how = "on its own floor" if FLOOR[target] == FLOOR[source] else "above it"
            bad.append(f"{i.where}: {source} imports {i.target} ({target} is {how})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The circles of rooms (strongly connected components of more than one room, or a self-loop)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(room: str) -> None:
        index[room] = low[room] = len(index)
        stack.append(room)
        on_stack.add(room)
        for other in sorted(graph.get(room, ())):
            if other not in index:
                visit(other)
                low[room] = min(low[room], low[other])
            elif other in on_stack:
                low[room] = min(low[room], index[other])
        if low[room] == index[room]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == room:
                    break
            if len(component) > 1 or room in graph.get(room, ()):
                found.append(sorted(component))

    for room in sorted(graph):
        if room not in index:
            visit(room)
    return found


def loaded_at_import(start: str, imports: list[Import]) -> set[str]:
    """Every module importing `start` loads: its parent packages and what they import at module level,
    followed through loadkit (third-party modules are listed, not followed)."""
    by_module: dict[str, list[Import]] = {}
    for i in imports:
        if i.top_level:
            by_module.setdefault(i.module, []).append(i)
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for n in range(1, len(parts) + 1):
            name = ".".join(parts[:n])
            if name in seen:
                continue
            seen.add(name)
            if name.split(".")[0] == "loadkit":
                todo.extend(i.target for i in by_module.get(name, []))
    return seen


# ---- the tests ---------------------------------------------------------------------------------------

def test_every_room_has_a_floor() -> None:
    rooms = {room_of(m) for m in modules()}
    assert not rooms - set(FLOOR), f"rooms without a floor in LAYERS: {sorted(rooms - set(FLOOR))}"
    assert not set(FLOOR) - rooms, f"LAYERS names rooms that do not exist: {sorted(set(FLOOR) - rooms)}"


def test_every_import_points_down_the_layers() -> None:
    bad = arrows_that_do_not_point_down(all_imports())
    assert not bad, "imports that do not point down the layers:\n  " + "\n  ".join(bad)


def test_no_import_cycles_between_rooms() -> None:
    assert cycles(room_graph(all_imports())) == []


def test_scoring_is_pure() -> None:
    outside = [f"{i.where}: {i.target}" for i in all_imports() if room_of(i.module) == "scoring"
               and (room_of(i.target) not in {"scoring", "models", "units"} if i.target.startswith("loadkit.")
                    else i.target.split(".")[0] not in PURE)]
    assert not outside, "scoring imports more than arithmetic:\n  " + "\n  ".join(outside)


def test_the_locust_child_imports_only_what_it_needs() -> None:
    loaded = loaded_at_import(PLUGIN, all_imports())
    heavy = {m for m in loaded if m.split(".")[0] in NOT_IN_THE_LOCUST_CHILD}
    ours = sorted(m for m in loaded if m.startswith("loadkit."))
    assert not heavy, f"{PLUGIN} pulls in {sorted(heavy)} (through {ours})"
    assert not any(m.startswith(("loadkit.models", "loadkit.scoring", "loadkit.analysis")) for m in ours), ours


def test_only_the_locust_child_imports_locust() -> None:
    imports = all_imports()
    for engine in ("locust", "gevent"):
        users = {i.module for i in imports if i.target.split(".")[0] == engine}
        # PLUGIN in users: the plugin itself imports both, so an import scan that found nothing fails here
        assert PLUGIN in users, f"the import scan missed the plugin's {engine}"
        assert users <= CHILD, f"{engine} imported outside the Locust child: {sorted(users - CHILD)}"
    assert not [i.where for i in imports if i.target == PLUGIN], "nothing imports the plugin: Locust loads it"
    outside = [i.where for i in imports if i.target in CHILD and i.module not in CHILD]
    assert not outside, f"the Locust child's modules imported from outside it: {outside}"


def test_the_checks_can_fail() -> None:
    """Each rule on a made-up import that breaks it, so a rule that can never fire is caught."""
    up = Import("loadkit.scoring._evaluate", "loadkit.analysis", 1, True)
    peer = Import("loadkit.load.runner", "loadkit.prometheus.source", 2, False)
    assert [b.split(": ", 1)[1] for b in arrows_that_do_not_point_down([up, peer])] == [
        "scoring imports loadkit.analysis (analysis is above it)",
        "load imports loadkit.prometheus.source (prometheus is on its own floor)",
    ]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    heavy = Import("loadkit.load.shapes", "loadkit.models.specs", 3, True)
    assert "loadkit.models.specs" in loaded_at_import(PLUGIN, [*all_imports(), heavy])


def architecture_text() -> str:
    """The generated part of docs/architecture.md: the floors, and what each room imports."""
    graph = room_graph(all_imports())
    lines = ["| floor | room | imports (rooms below it) |", "|---|---|---|"]
    for floor, rooms in enumerate(LAYERS):
        for room in rooms:
            name = "loadkit/__init__.py" if room == "loadkit" else (
                f"loadkit/{room}/" if (PACKAGE / room).is_dir() else f"loadkit/{room}.py")
            targets = ", ".join(sorted(graph.get(room, ()), key=lambda r: (FLOOR[r], r))) or "-"
            lines.append(f"| {len(LAYERS) - floor} | `{name}` | {targets} |")
    return "\n".join(lines) + "\n"


def test_the_documented_graph_is_the_code() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert architecture_text() in doc, (
        "docs/architecture.md is out of date: paste the output of `.venv/bin/python -m tests.test_architecture`")


if __name__ == "__main__":
    sys.stdout.write(architecture_text())
