"""The package docstring's map names every module of comfy_worker, and only those."""

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
