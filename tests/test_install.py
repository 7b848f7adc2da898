"""What each install role brings: the requirements files, pyproject's extras, and a torch-free
leaderboard.

`requirements-leaderboard.txt` (the scorer, the leaderboard tab, a leaderboard-only Space) must
not pull torch or its CUDA stack, directly or through a dependency; the installed packages'
own metadata says what each one requires. The scorer and the app are then run in a child
Python that sees only what that list installs (every other package of this environment is
hidden from its importer and from `importlib.metadata`): the same test as a fresh venv built
from the list, without building one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
TORCH_STACK = ("torch", "torchvision", "triton", "bert-score")
"""Packages that are, or only come with, torch (plus every `nvidia-*` CUDA library)."""


def _requirements(path: Path) -> list[Requirement]:
    """The requirements of one file that apply here (markers evaluated), following `-r` lines."""
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            out += _requirements(path.parent / line[3:].strip())
        elif line:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate():
                out.append(req)
    return out


def _closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution that installing `requirements` brings, from the installed metadata."""
    seen: set[str] = set()
    todo = [(req, "") for req in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        key = name + "".join(f"[{e}]" for e in sorted(extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise AssertionError(f"{req.name} is not installed here (pip install -r requirements-dev.txt)") from None
        for dep in dist.requires or []:
            dep_req = Requirement(dep)
            for e in extras or {""}:  # an extra's own dependencies carry `extra == "e"` markers
                todo.append((dep_req, e))
    return {key.split("[")[0] for key in seen}


def _is_torch_stack(name: str) -> bool:
    return name in TORCH_STACK or name.startswith("nvidia-")


def test_leaderboard_requirements_bring_no_torch():
    requirements = _requirements(REPO / "requirements-leaderboard.txt")
    assert not any(line.strip().startswith("-r") for line in (REPO / "requirements-leaderboard.txt").read_text().splitlines())
    brought = _closure(requirements)
    assert {"gradio", "numpy", "nltk", "rouge-score", "sacrebleu", "huggingface-hub"} <= brought
    assert not sorted(filter(_is_torch_stack, brought)), "requirements-leaderboard.txt brings the torch stack"
    # the check itself sees torch where it is: the model list brings it
    assert "torch" in _closure(_requirements(REPO / "requirements-model.txt"))


def test_requirements_txt_is_both_roles_and_pyproject_mirrors_them():
    try:
        import tomllib  # novermin (3.11+; 3.10 falls back to tomli below)
    except ModuleNotFoundError:  # Python 3.10 (requirements-dev.txt installs tomli there)
        import tomli as tomllib

    lines = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    assert [line for line in lines if line] == ["-r requirements-leaderboard.txt", "-r requirements-model.txt"]
    dynamic = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"] == {"file": ["requirements-leaderboard.txt"]}
    assert dynamic["optional-dependencies"] == {"model": {"file": ["requirements-model.txt"]}}
    model = {canonicalize_name(r.name) for r in _requirements(REPO / "requirements-model.txt")}
    assert "bert-score" in model and "torch" in model  # BERTScore comes with the model stack


# --- the leaderboard in a Python that has only requirements-leaderboard.txt --------------------------

HIDE = textwrap.dedent('''
    """Hide from this interpreter every package that requirements-leaderboard.txt does not install."""
    import importlib.machinery
    import json
    import os

    _NAMES = frozenset(json.loads(os.environ["HIDDEN_MODULES"]))
    _DISTS = frozenset(json.loads(os.environ["HIDDEN_DISTS"]))
    _PathFinder = importlib.machinery.PathFinder
    _find_spec = _PathFinder.__dict__["find_spec"].__func__  # a classmethod
    _distributions = _PathFinder.__dict__["find_distributions"]  # a classmethod or a staticmethod


    def find_spec(cls, name, path=None, target=None):
        if path is None and name in _NAMES:
            return None  # as if not installed: `import torch` fails, `find_spec("torch")` is None
        return _find_spec(cls, name, path, target)


    def find_distributions(*args, **kwargs):
        for dist in _distributions.__func__(*args, **kwargs):
            if (dist.metadata["Name"] or "").lower().replace("_", "-").replace(".", "-") not in _DISTS:
                yield dist


    _PathFinder.find_spec = classmethod(find_spec)
    _PathFinder.find_distributions = type(_distributions)(find_distributions)
''')


@pytest.fixture(scope="module")
def leaderboard_only(tmp_path_factory) -> dict[str, str]:
    """The environment of a child Python that sees only the leaderboard list's packages."""
    keep = _closure(_requirements(REPO / "requirements-leaderboard.txt")) | {"pip", "setuptools"}
    installed = {canonicalize_name(d.metadata["Name"]) for d in metadata.distributions()}
    hidden_dists = installed - keep
    hidden_modules = sorted(name for name, dists in metadata.packages_distributions().items()
                            if all(canonicalize_name(d) in hidden_dists for d in dists))
    assert "torch" in hidden_modules and "transformers" in hidden_modules and "bert_score" in hidden_modules
    site = tmp_path_factory.mktemp("leaderboard_only")
    (site / "sitecustomize.py").write_text(HIDE)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]),
                HIDDEN_MODULES=json.dumps(hidden_modules), HIDDEN_DISTS=json.dumps(sorted(hidden_dists)),
                HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                CRASHCHAT_DB=str(site / "board.sqlite3"), GRADIO_ANALYTICS_ENABLED="False")


def _python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_the_scorer_runs_without_torch(leaderboard_only, split_dir, tmp_path):
    split = {task: json.loads(path.read_text()) for task, path in
             (("crash_recognition", split_dir / "crashchat_dada_video_total_crash_recognition_test.json"),
              ("crash_description", split_dir / "crashchat_dada_video_total_crash_description_test.json"))}
    rows = [{"video": records[0]["video"][0].split("/")[-1], "task": task,
             "response": records[0]["conversations"][1]["value"]} for task, records in split.items()]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(row) + "\n" for row in rows))
    code = textwrap.dedent(f"""
        import importlib.util, importlib.metadata, sys
        for name in ("torch", "transformers", "bert_score", "torchvision", "peft"):
            assert importlib.util.find_spec(name) is None, name + " is visible"
        try:
            importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            pass
        else:
            raise AssertionError("torch's metadata is visible")
        from leaderboard.__main__ import main
        code = main(["score", {str(preds)!r}, "--split-dir", {str(split_dir)!r}, "--bootstrap", "20",
                     "--bertscore", "--json", {str(tmp_path / "out.json")!r}])
        assert "torch" not in sys.modules, "the scorer imported torch"
        sys.exit(code)
    """)
    done = _python(code, leaderboard_only, tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "out.json").read_text())
    tasks = result["protocols"]["paper"]["tasks"]
    assert tasks["crash_recognition"]["n"] == 1 and tasks["crash_recognition"]["accuracy"] == 1.0
    assert tasks["crash_description"]["bleu"] == pytest.approx(1.0)  # the reference itself
    # BERTScore: null, and the reason is said, never a 0
    assert tasks["crash_description"]["bertscore_f1"] is None
    assert "not installed" in result["bertscore"] and "BERTScore not computed" in done.stderr


def test_the_app_builds_without_torch(leaderboard_only, tmp_path):
    code = textwrap.dedent("""
        import sys
        import app
        demo = app.build_app()
        assert "torch" not in sys.modules, "building the app imported torch"
        print("built", type(demo).__name__)
    """)
    done = _python(code, leaderboard_only, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "built Blocks" in done.stdout
