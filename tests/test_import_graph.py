"""The package's import graph: no circles, and no import from a lower layer to a higher one.

Every `import` and `from ... import` of every module is read with `ast` (module-level ones and
those inside functions, methods, `if` and `try` blocks alike), without importing anything. An
edge goes from a module to the module it names: `from gradcam_cli.x import y` is an import of the
submodule gradcam_cli.x.y when there is one (else of gradcam_cli.x), `from gradcam_cli.explain
import methods` of gradcam_cli.explain.methods, and importing a package is importing its
__init__. (Python also runs the parents' __init__s on the way; that is not counted, or every
package that re-exports a module of its own would be a circle.) Imports built from strings
(importlib.import_module) are not seen.

The layers, top down (README's "The package"; a module imports only from its own layer or lower
ones): cli; report and compare; evaluate and distributed; api; files; explain; models. The root
__init__ (the public face, which imports api) sits with api, __main__ with cli, and errors.py and
numbers.py are shared below every layer: all may import them, and they import only each other.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gradcam_cli"

# Each room (the first name after the package; "" is the package's own __init__) and its layer,
# 0 the top. A room missing here fails the test: a new room says where it stands. The package's
# __init__ is the public face over the API and evaluate's functions (it names them for type
# checkers): a room above both, and imported by the command line alone (for __version__).
LAYERS = {
    "cli": 0, "__main__": 0, "": 0,
    "report": 1, "compare": 1,
    "evaluate": 2, "distributed": 2,
    "api": 3,
    "files": 4,
    "explain": 5,
    "models": 6,
    "errors": 7, "numbers": 7,
}
LAYER_NAMES = {0: "cli", 1: "report/compare", 2: "evaluate/distributed", 3: "api", 4: "files", 5: "explain",
               6: "models", 7: "shared errors/numbers"}


# -- the reader --------------------------------------------------------------------------------

def modules_of(package_dir):
    """{dotted module name: (its file, whether it is a package's __init__)} under `package_dir`,
    named from the package's own name (the folder's)."""
    package_dir = Path(package_dir)
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = (package_dir.name,) + path.relative_to(package_dir).with_suffix("").parts
        is_init = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_init else parts)] = (path, is_init)
    return found


def _known(name, modules):
    """`name`, or its longest prefix that is a module of the package (None outside it)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def _base(module, is_init, node):
    """The absolute name `from ... import` refers to in `module` (relative imports resolved)."""
    if not node.level:
        return node.module
    package = module.split(".") if is_init else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def import_graph(package_dir):
    """{module: {imported module of the same package: (file, line of the first such import)}}
    for every module under `package_dir`, every import statement counted wherever it stands."""
    modules = modules_of(package_dir)
    graph = {}
    for module, (path, is_init) in modules.items():
        edges = graph.setdefault(module, {})
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                named = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _base(module, is_init, node)
                named = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            else:
                continue
            for name in named:
                target = _known(name, modules)
                if target is not None and target != module:
                    edges.setdefault(target, (path, node.lineno))
    return graph


def circles(graph):
    """Each strongly connected component of more than one module (Tarjan's algorithm, iterative),
    as one circle through it: [m0, m1, ..., m0], each module importing the next."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return [_circle_in(component, graph) for component in components]


def _circle_in(component, graph):
    """A shortest circle from the component's first module back to itself, inside the component."""
    start = min(component)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for child in sorted(graph.get(path[-1], ())):
            if child == start:
                return path + [start]
            if child in component and child not in seen:
                seen.add(child)
                paths.append(path + [child])
    raise AssertionError(f"no circle through {start} in its component")  # cannot happen


def room_of(module):
    """The room of a dotted module name: the first name after the package ("" for its __init__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports(graph, layers):
    """(importer, imported, file, line) for each import of a module in a higher layer (`layers`:
    room -> layer, 0 the top). KeyError naming the module whose room has no layer."""
    found = []
    for module, edges in sorted(graph.items()):
        for target, (path, line) in sorted(edges.items()):
            if layers[room_of(target)] < layers[room_of(module)]:
                found.append((module, target, path, line))
    return found


def circle_lines(graph, found):
    """Each circle as `m0 -> m1 -> m0  (file:line of each import)`."""
    return [" -> ".join(circle) + "  (" + ", ".join(
        f"{Path(graph[a][b][0]).name}:{graph[a][b][1]}" for a, b in zip(circle, circle[1:])) + ")" for circle in found]


# -- the package -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def graph():
    return import_graph(PACKAGE)


def test_every_room_of_the_package_has_a_layer(graph):
    missing = sorted({room_of(module) for module in graph} - set(LAYERS))
    assert not missing, f"rooms with no layer in tests/test_import_graph.py's LAYERS: {missing}"


def test_the_reader_sees_the_packages_imports_wherever_they_stand(graph):
    # module level, `from package import module`, a function's import, a method's import
    assert "gradcam_cli.explain.attention" in graph["gradcam_cli.explain.engine"]
    assert "gradcam_cli.explain.backend.jax" in graph["gradcam_cli.explain.backend"]
    assert "gradcam_cli.distributed.worker" in graph["gradcam_cli.distributed"]
    assert "gradcam_cli.models.precision" in graph["gradcam_cli.explain.engine"]
    assert len(graph) > 100 and sum(map(len, graph.values())) > 300


def test_no_module_imports_itself_back(graph):
    found = circles(graph)
    assert not found, "import circles (each module imports the next; file:line of each import):\n" + "\n".join(
        circle_lines(graph, found))


def test_no_module_imports_from_a_higher_layer(graph):
    found = upward_imports(graph, LAYERS)
    assert not found, "imports from a lower layer to a higher one:\n" + "\n".join(
        f"{importer} ({LAYER_NAMES[LAYERS[room_of(importer)]]}) imports {imported} "
        f"({LAYER_NAMES[LAYERS[room_of(imported)]]}) at {path.relative_to(PACKAGE.parent)}:{line}"
        for importer, imported, path, line in found)


# -- the reader on a package made for it -------------------------------------------------------

def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


PLANTED = {
    "pkg/__init__.py": "",
    "pkg/errors.py": "",
    "pkg/top/__init__.py": "from pkg.top.a import thing\n",
    "pkg/top/a.py": "import os\nfrom pkg import errors\n\ndef thing():\n    from pkg.low import b\n",
    "pkg/low/__init__.py": "",
    "pkg/low/b.py": "from .c import f\n",
    "pkg/low/c.py": "class C:\n    def m(self):\n        if True:\n            import pkg.low.b as again\n\n"
                    "def f():\n    try:\n        from pkg.top import a\n    except ImportError:\n        pass\n",
    "pkg/low/d.py": "from pkg.low import c, nothing_here\nfrom . import b\nfrom .. import errors\n",
}


def test_the_reader_finds_a_planted_circle_and_upward_import(tmp_path):
    _write(tmp_path, PLANTED)
    graph = import_graph(tmp_path / "pkg")
    assert graph == {
        "pkg": {},
        "pkg.errors": {},
        "pkg.top": {"pkg.top.a": (tmp_path / "pkg/top/__init__.py", 1)},
        "pkg.top.a": {"pkg.errors": (tmp_path / "pkg/top/a.py", 2), "pkg.low.b": (tmp_path / "pkg/top/a.py", 5)},
        "pkg.low": {},
        "pkg.low.b": {"pkg.low.c": (tmp_path / "pkg/low/b.py", 1)},
        "pkg.low.c": {"pkg.low.b": (tmp_path / "pkg/low/c.py", 4), "pkg.top.a": (tmp_path / "pkg/low/c.py", 8)},
        "pkg.low.d": {"pkg.low.c": (tmp_path / "pkg/low/d.py", 1), "pkg.low": (tmp_path / "pkg/low/d.py", 1),
                      "pkg.low.b": (tmp_path / "pkg/low/d.py", 2), "pkg.errors": (tmp_path / "pkg/low/d.py", 3)},
    }
    found = circles(graph)  # one component {low.b, low.c, top.a}: its shortest circle from low.b
    assert found == [["pkg.low.b", "pkg.low.c", "pkg.low.b"]]
    assert circle_lines(graph, found) == ["pkg.low.b -> pkg.low.c -> pkg.low.b  (b.py:1, c.py:4)"]
    layers = {"top": 0, "low": 1, "": 0, "errors": 2}
    assert [(a, b, line) for a, b, _, line in upward_imports(graph, layers)] == [("pkg.low.c", "pkg.top.a", 8)]
    with pytest.raises(KeyError, match="errors"):
        upward_imports(graph, {"top": 0, "low": 1, "": 0})


def test_a_circle_of_three_is_named_in_order_and_a_longer_component_gives_one_circle():
    graph = {"p.a": {"p.b": (Path("a.py"), 1)}, "p.b": {"p.c": (Path("b.py"), 2)},
             "p.c": {"p.a": (Path("c.py"), 3), "p.d": (Path("c.py"), 4)}, "p.d": {}}
    assert circles(graph) == [["p.a", "p.b", "p.c", "p.a"]]
    assert circle_lines(graph, circles(graph)) == ["p.a -> p.b -> p.c -> p.a  (a.py:1, b.py:2, c.py:3)"]
    graph["p.d"] = {"p.a": (Path("d.py"), 5)}
    assert circles(graph) == [["p.a", "p.b", "p.c", "p.a"]]  # one component {a, b, c, d}: its shortest circle
    del graph["p.c"]["p.a"], graph["p.c"]["p.d"]
    assert circles(graph) == []
