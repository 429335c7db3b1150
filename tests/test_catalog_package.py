"""tools/catalog/ as a package: each module imports alone, imports run one way, tools live at module level."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tools" / "catalog"
# Who may import whom inside the package (the one-way order the package docstring states).
ALLOWED = {"money": set(), "context": {"money"}, "reads": {"context", "money"},
           "users": {"context", "reads", "money"}, "memory": {"context", "reads"},
           "carts": {"context", "reads"}, "__init__": {"context", "users", "memory", "carts"}}


def _catalog_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tools.catalog"):
            rest = node.module.removeprefix("tools.catalog").lstrip(".")
            names |= {rest} if rest else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name.removeprefix("tools.catalog.") for a in node.names if a.name.startswith("tools.catalog.")}
    return names


def test_imports_inside_the_package_run_one_way():
    found = {p.stem: _catalog_imports(p) for p in PACKAGE.glob("*.py")}
    assert set(found) == set(ALLOWED)
    for module, imports in found.items():
        assert imports <= ALLOWED[module], (module, imports - ALLOWED[module])


@pytest.mark.parametrize("module", ["money", "context", "reads", "users", "memory", "carts"])
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    done = subprocess.run([sys.executable, "-c", f"import tools.catalog.{module}"], cwd=PACKAGE.parents[1],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_tools_are_module_level_functions_bound_to_a_context(tmp_path):
    from datetime import datetime

    from transformers.utils import get_json_schema

    from tools.catalog import TOOLS, ToolContext, build_tools, users

    ctx = ToolContext(store=None, cutoff=datetime(2024, 1, 1), audit_path=tmp_path / "a.jsonl")
    bound = build_tools(ctx)
    assert [f.__name__ for f in bound] == [f.__name__ for f in TOOLS]
    assert all("." not in f.__qualname__ for f in TOOLS)  # not closures inside a factory
    assert "ctx" not in get_json_schema(bound[0])["function"]["parameters"]["properties"]
    assert users.explain_user.id_checks["user_id"].__name__ == "is_known_user"
    assert set(bound[1].known_values) == {"user_id"}
    assert bound[1].known_values["user_id"]("123")  # no store: it cannot tell, so it refuses no id
