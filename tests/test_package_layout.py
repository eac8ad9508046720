"""The package's shape, checked by reading its source: no import circle, no
module importing another's private name, Optuna behind one module, MLflow
behind ``tracking``. Imports inside functions count: a circle of lazy imports
is still two modules that cannot be read, or changed, one without the other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "ablation"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) of every import in a module, at any depth."""
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            out.append((base, [a.name for a in node.names], node.lineno))
    return out


def _edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules a module imports (``from pkg import mod`` is the module ``pkg.mod``)."""
    out = set()
    for base, names, _ in _imports(name, path):
        subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
        out.update(subs)
        if base in modules and (len(subs) < len(names) or not names):
            out.add(base)
    out.discard(name)
    return out


def _cycles(modules: dict[str, Path], within=lambda m: True) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), among modules ``within`` selects."""
    graph = {m: {d for d in _edges(m, p, modules) if within(d)} for m, p in modules.items() if within(m)}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_the_import_circles_it_is_meant_to_catch(tmp_path):
    """The checker itself: two modules that import each other (one lazily) are one circle; a third that
    imports one of them is not in it."""
    pkg = tmp_path / "ablation"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from ablation import b\n")
    (pkg / "b.py").write_text("def f():\n    from ablation.a import g\n")
    (pkg / "c.py").write_text("import ablation.a\n")
    mods = {"ablation": pkg / "__init__.py", **{f"ablation.{m}": pkg / f"{m}.py" for m in "abc"}}
    assert _cycles(mods) == [["ablation.a", "ablation.b"]]
    (pkg / "b.py").write_text("def f():\n    from ablation import c\n")
    assert _cycles(mods) == [["ablation.a", "ablation.b", "ablation.c"]]  # a -> b -> c -> a
    (pkg / "c.py").write_text("")
    assert _cycles(mods) == []


def test_no_import_circle_outside_the_data_package():
    assert _cycles(MODULES, lambda m: not m.startswith("ablation.data")) == []


@pytest.mark.xfail(strict=True, reason="data.ceiling <-> data.synthphone(2): the generators call the ceilings "
                                       "and the ceilings read the generators' models; open debt, no change under "
                                       "way: remove this mark when the circle is broken")
def test_no_import_circle_in_the_data_package():
    assert _cycles(MODULES, lambda m: m.startswith("ablation.data")) == []


def _private_crossings(within) -> list[str]:
    crossing = []
    for name, path in MODULES.items():
        if not within(name):
            continue
        for base, names, line in _imports(name, path):
            for n in names:
                private = n.startswith("_") and not n.startswith("__")
                module = f"{base}.{n}" in MODULES
                if private and not module:
                    crossing.append(f"{path.relative_to(PKG.parent)}:{line} takes {base}.{n}")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {a.asname or a.name.split(".")[-1]: (f"{n.module}.{a.name}" if isinstance(n, ast.ImportFrom) else a.name)
                   for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        for node in ast.walk(tree):  # module._private through an imported project module
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and aliases.get(node.value.id) in MODULES):
                crossing.append(f"{path.relative_to(PKG.parent)}:{node.lineno} uses {node.value.id}.{node.attr}")
    return crossing


def test_no_module_imports_another_modules_private_name():
    assert _private_crossings(lambda m: not m.startswith("ablation.data")) == []


@pytest.mark.xfail(strict=True, reason="data.synthphone2 builds on data.synthphone's private generator steps; "
                                       "remove this mark when the generators share them publicly")
def test_no_private_names_cross_the_data_package():
    assert _private_crossings(lambda m: m.startswith("ablation.data")) == []


def _importers(top: str) -> list[str]:
    return sorted(name for name, path in MODULES.items()
                  if any(base == top or base.startswith(top + ".") for base, _, _ in _imports(name, path)))


def test_optuna_is_imported_by_one_module():
    assert _importers("optuna") == ["ablation.study._optuna"]


def test_mlflow_is_imported_by_tracking_only():
    # besides tracking, only the artifact-repository plugin that MLflow itself loads through its
    # entry point (it must subclass MLflow's repositories, and imports them inside its functions)
    assert _importers("mlflow") == ["ablation.project_artifacts", "ablation.tracking"]
