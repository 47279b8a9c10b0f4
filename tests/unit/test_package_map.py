"""The package docstring's map names every module of comfy_worker, and only those; the
imports between them climb few floors and never loop."""

import ast
import re
from pathlib import Path

import comfy_worker


def test_the_package_map_lists_every_module_once():
    package = Path(comfy_worker.__file__).parent
    modules = {path.stem for path in package.glob("*.py") if path.stem != "__init__"}
    assert comfy_worker.__doc__ is not None
    listed = re.findall(r"^    (\w+)\s{2,}", comfy_worker.__doc__, flags=re.MULTILINE)
    assert sorted(listed) == sorted(modules), set(listed) ^ modules
    assert len(listed) == len(set(listed)), "a module is listed twice"


def _sibling_imports(path: Path, modules: set[str]) -> set[str]:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [alias.name for alias in node.names]
            imported.update(name for name in names if name in modules)
    return imported


def test_the_package_stands_on_at_most_eight_floors():
    """A module's floor is one above the highest module it imports. Each floor a reader
    must climb to understand the worker costs; a new one should be a decision, not drift."""
    package = Path(comfy_worker.__file__).parent
    modules = {path.stem for path in package.glob("*.py") if path.stem != "__init__"}
    imports = {name: _sibling_imports(package / f"{name}.py", modules) for name in modules}
    floors: dict[str, int] = {}
    while len(floors) < len(modules):
        ready = [m for m in modules - floors.keys() if imports[m] <= floors.keys()]
        assert ready, f"import cycle among {sorted(modules - floors.keys())}"
        for module in ready:
            floors[module] = 1 + max((floors[m] for m in imports[module]), default=-1)
    assert max(floors.values()) + 1 <= 8, sorted(floors.items(), key=lambda item: item[1])
    assert floors["worker"] <= 6 and "remote_models" not in imports["named_workflows"]
