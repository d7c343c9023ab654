"""The package's imports go one way (docs/development.md, "Layout and import order"): every import of
every module, at module level or inside a function, read from the source (nothing is imported here)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "megatron_grow"


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package by its __init__.py)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(name: str, path: Path, known: dict) -> set[str]:
    """The modules ``name`` imports anywhere in its source: ``from a.b import c`` is a.b.c when that is
    a module, else a.b (importing a submodule runs its package's __init__, which is not counted: a
    package that imports its own submodules is no circle)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # import a.b.c of a package module: a.b.c, or the nearest module above
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    graph = import_graph()
    assert "megatron_grow.config" in graph and "megatron_grow.optim.newton_schulz" in graph
    assert not cycles(graph), "modules that import each other (lazy imports included):\n" + "\n".join(
        " <-> ".join(c) for c in cycles(graph))


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    known = modules()
    ns = imported("megatron_grow.optim.newton_schulz", known["megatron_grow.optim.newton_schulz"], known)
    assert {"megatron_grow.optim.ns_triton", "megatron_grow.optim.ns_te"} <= ns  # (lazy, from a package)


def test_config_imports_no_component():
    """config.py is the vocabulary below every component: nothing of the package, and not torch."""
    graph = import_graph()
    assert not graph["megatron_grow.config"], graph["megatron_grow.config"]
    tree = ast.parse((PACKAGE / "config.py").read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "." for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in names if m.split(".")[0] in ("megatron_grow", "torch", "megatron", ".")], names
