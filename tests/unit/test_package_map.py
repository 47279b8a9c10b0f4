"""comfy_worker's map and its layering: the package docstring names every room and module, and
only those; the rooms stand in one order and a room never imports one above it; the imports
between modules never loop and climb few floors; worker.py leans on at most ten of its siblings."""

import ast
import re
from pathlib import Path

import comfy_worker

PACKAGE = Path(comfy_worker.__file__).parent
ROOMS_BOTTOM_UP = ["core", "node_packs", "request", "comfyui", "transfer", "progress", "models"]
"""The rooms (sub-packages), lowest first; the story's modules at the package's root stand above them all."""


def modules() -> dict[str, Path]:
    """Every module by its dotted name inside the package ("core.errors", "worker")."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if path.stem != "__init__":
            found[".".join(path.relative_to(PACKAGE).with_suffix("").parts)] = path
    return found


def room(module: str) -> str:
    """A module's room; "" for the package's root."""
    return module.rpartition(".")[0]


def rank(module: str) -> int:
    return ROOMS_BOTTOM_UP.index(room(module)) if room(module) else len(ROOMS_BOTTOM_UP)


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `module` imports (relative imports, as the package writes them)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = module.split(".")[: -node.level]
            target = [*base, *(node.module.split(".") if node.module else [])]
            names = [".".join(target)] if node.module else [".".join([*target, alias.name]) for alias in node.names]
            found.update(name for name in names if name in known)
    return found


def test_the_package_map_lists_every_room_and_module_once():
    assert comfy_worker.__doc__ is not None
    listed, current = [], ""
    for line in comfy_worker.__doc__.splitlines():
        heading = re.match(r"^(\w+)/: ", line)
        if heading or line.startswith("The story"):
            current = heading.group(1) + "." if heading else ""
        entry = re.match(r"^    (\w+)\s{2,}", line)
        if entry:
            listed.append(current + entry.group(1))
    assert sorted(listed) == sorted(modules()), set(listed) ^ set(modules())
    assert len(listed) == len(set(listed)), "a module is listed twice"
    rooms = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert rooms == set(ROOMS_BOTTOM_UP), "every room is in the order, and only rooms"


def test_no_room_imports_one_above_it():
    known = modules()
    upward = [
        f"{module} -> {target}"
        for module, path in known.items()
        for target in imports(module, path, set(known))
        if rank(target) > rank(module)
    ]
    assert upward == []


def test_the_modules_stand_on_at_most_eight_floors_without_a_circle():
    """A module's floor is one above the highest module it imports. Each floor a reader must
    climb to understand the worker costs; a new one should be a decision, not drift."""
    known = modules()
    graph = {module: imports(module, path, set(known)) for module, path in known.items()}
    floors: dict[str, int] = {}
    while len(floors) < len(graph):
        ready = [m for m in graph.keys() - floors.keys() if graph[m] <= floors.keys()]
        assert ready, f"import cycle among {sorted(graph.keys() - floors.keys())}"
        for module in ready:
            floors[module] = 1 + max((floors[m] for m in graph[module]), default=-1)
    assert max(floors.values()) + 1 <= 8, sorted(floors.items(), key=lambda item: item[1])
    assert floors["worker"] <= 6
    assert "models.remote_models" not in graph["request.named_workflows"]


def test_worker_py_leans_on_at_most_ten_siblings():
    """Its siblings are what sits beside it: the root's modules and the rooms."""
    known = modules()
    siblings = {target.split(".")[0] for target in imports("worker", known["worker"], set(known))}
    assert len(siblings) <= 10, sorted(siblings)


def test_only_the_node_catalog_reads_the_shape_of_object_info():
    """/object_info's shape (a type's `input.required` / `optional`, `output_node`,
    `python_module`) is read in one module; the others ask its NodeCatalog. Reading means
    looking a key up (`.get("required")`, `["optional"]`); writing a JSON Schema's own
    `"required": [...]` is not reading ComfyUI."""
    shape = re.compile(r'(\.get\(|\[)\s*"(required|optional|output_node|python_module)"')
    readers = sorted(name for name, path in modules().items() if shape.search(path.read_text()))
    assert readers == ["request.node_catalog"]
