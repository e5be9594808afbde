"""dvc.yaml and the code agree: every project module a stage runs is one of its deps, so that
changing it re-runs the stage (a module missing there would leave stale results cached)."""

import ast
import re

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

PROJECT_PACKAGES = ("finetune", "stages")


def module_file(module):
    """The file of a project module (`finetune.scores` -> finetune/scores.py), or None."""
    path = PROJECT_ROOT.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path):
    """Project modules `path` imports, with the packages each import runs on its way."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] in PROJECT_PACKAGES:
                modules.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return {module for module in modules if module_file(module)}


def files_run_by(module):
    """Every project file that `python -m <module>` executes, following imports."""
    seen, pending = set(), [module]
    while pending:
        path = module_file(pending.pop())
        if path in seen:
            continue
        seen.add(path)
        pending.extend(imported_modules(path))
    return {str(path.relative_to(PROJECT_ROOT)) for path in seen}


def undeclared(files, deps):
    """The files that no dep names, directly or through a folder above them."""
    return sorted(file for file in files if not any(file == dep or file.startswith(dep.rstrip("/") + "/")
                                                    for dep in deps))


STAGES = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_module_a_stage_runs_is_a_dep(stage):
    definition = STAGES[stage]
    module = re.fullmatch(r"python -m ([\w.]+)", definition["cmd"]).group(1)
    assert undeclared(files_run_by(module), definition["deps"]) == []


def test_a_missing_dep_is_found():
    assert undeclared({"finetune/scores.py", "finetune/cpu_speedups/dropout.py"},
                      ["finetune/scores.py", "finetune/cpu_speedups"]) == []
    assert undeclared({"finetune/scores.py", "finetune/data.py"}, ["finetune/scores.py"]) == ["finetune/data.py"]
    assert "finetune/cpu_speedups/dropout.py" in files_run_by("stages.train")
