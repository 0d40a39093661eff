"""Packages depend one way: core -> proxy -> features -> api -> processes.

The import graph is read from ``src/passgate`` with ``ast`` (every ``import`` counts,
inside functions and ``TYPE_CHECKING`` blocks too). A unit is a top-level package or
module of ``passgate``; each unit sits in one layer, may import its own layer and those
below it, and the units' graph has no cycle. A new top-level module or package must be
placed in ``LAYERS`` before this test passes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "passgate"

LAYERS: tuple[frozenset[str], ...] = (
    # core: settings, error shape, one call's state and its caller, duration grammar
    frozenset(
        {
            PACKAGE,
            "asgi",
            "call_record",
            "config",
            "durations",
            "errors",
            "exchange",
            "lines",
            "listen_tls",
            "principal",
            "providers",
            "request_id",
            "settings_env",
            "tasks",
            "types",
        }
    ),
    # the forwarding engine: knows the features only through proxy/hooks.py
    frozenset({"proxy"}),
    # the features
    frozenset({"accounting", "auth", "limits", "observability", "pooling", "storage"}),
    # admin routes and the web UI (which uses the admin API's services)
    frozenset({"api", "ui"}),
    # the app factory: wires every part of one gateway
    frozenset({"app"}),
    # the processes: the command, the server and its workers with their HTTP protocol, the
    # side processes
    frozenset({"runtime"}),
)

# No cycle is allowed between units.
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


def module_name(path: Path, src: Path) -> str:
    """The dotted module name of a file under ``src``."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, src: Path) -> Iterator[str]:
    """Every ``passgate`` module (or package) the file imports, relative imports resolved."""
    name = module_name(path, src)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield ".".join([*base, node.module] if node.module else base)
            elif node.module is not None:
                yield node.module


def unit(module: str) -> str | None:
    """The unit a ``passgate`` module belongs to; None for other distributions."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    return parts[1] if len(parts) > 1 else PACKAGE


def unit_graph(src: Path) -> dict[str, dict[str, set[str]]]:
    """unit -> imported unit -> the importing modules (as evidence for a failure)."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        name = module_name(path, src)
        source = unit(name)
        assert source is not None
        edges = graph.setdefault(source, {})
        for target in filter(None, map(unit, imported(path, src))):
            if target != source:
                edges.setdefault(target, set()).add(name)
    return graph


def layer_of(layers: tuple[frozenset[str], ...]) -> dict[str, int]:
    """unit -> its layer's index (0: the core)."""
    return {name: index for index, layer in enumerate(layers) for name in layer}


def against_direction(
    graph: Mapping[str, Mapping[str, set[str]]], layers: tuple[frozenset[str], ...]
) -> list[str]:
    """Each import from a lower layer of a higher one, and each unit in no layer."""
    level = layer_of(layers)
    problems = [f"{name} is in no layer" for name in sorted(graph) if name not in level]
    for source, edges in sorted(graph.items()):
        for target, modules in sorted(edges.items()):
            if source in level and target in level and level[target] > level[source]:
                problems.append(f"{source} imports {target} (in {', '.join(sorted(modules))})")
    return problems


def cycles(graph: Mapping[str, Mapping[str, set[str]]]) -> list[frozenset[str]]:
    """The strongly connected groups of more than one unit (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(frozenset(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, set[str]]]:
    return unit_graph(SRC)


def test_every_import_points_down_the_layers(graph: dict[str, dict[str, set[str]]]) -> None:
    assert against_direction(graph, LAYERS) == []


def test_no_package_cycle(graph: dict[str, dict[str, set[str]]]) -> None:
    assert [sorted(group) for group in cycles(graph) if group not in KNOWN_CYCLES] == []


def test_the_proxy_imports_no_feature(graph: dict[str, dict[str, set[str]]]) -> None:
    assert set(graph["proxy"]) <= LAYERS[0]


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    package = tmp_path / PACKAGE
    for name, body in {
        "__init__.py": "",
        "config.py": "from passgate.proxy import relay\n",
        "proxy/__init__.py": "",
        "proxy/relay.py": "from ..auth import keys\n",
        "auth/__init__.py": "",
        "auth/keys.py": "import passgate.proxy.relay\n",
    }.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    graph = unit_graph(tmp_path)
    assert against_direction(graph, LAYERS) == [
        "config imports proxy (in passgate.config)",
        "proxy imports auth (in passgate.proxy.relay)",
    ]
    assert cycles(graph) == [frozenset({"proxy", "auth"})]
