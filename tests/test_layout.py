"""The code's layout (README "Development"): every module says what it holds, and no two modules
define a public class of the same name (a reader who sees `Session` or `Record` in an annotation
must not have to guess which one)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted([*REPO.glob("crashchat/**/*.py"), *REPO.glob("leaderboard/**/*.py"), REPO / "app.py"])


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def test_every_module_opens_with_a_docstring():
    missing = [str(p.relative_to(REPO)) for p in MODULES if ast.get_docstring(_tree(p)) is None]
    assert not missing, f"modules without a docstring saying what they hold: {missing}"


def test_no_two_modules_define_a_public_class_of_the_same_name():
    where = defaultdict(list)
    for path in MODULES:
        for node in _tree(path).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where[node.name].append(str(path.relative_to(REPO)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}
