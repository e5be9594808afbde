"""dvc.yaml and the code agree exactly. Every project module a stage runs is one of its deps (else
a changed module would leave stale results cached) and every module its deps name is one it runs
(else a change there would re-run it for nothing); every param it reads is in its `params:` list
and every param listed there is one it reads."""

import ast
import contextlib
import dataclasses
import re

import pytest
import yaml

from finetune.core import params as params_module
from finetune.core.params import Params
from stages import diagnose, download, evaluate, export, plot, publish, tokenize, train
from tests.conftest import write_own_data
from tests.repos import PROJECT_ROOT, write_params

PROJECT_PACKAGES = ("finetune", "stages")
STAGES = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
STAGE_MODULES = {"download": download, "tokenize": tokenize, "train": train, "evaluate": evaluate,
                 "diagnose": diagnose, "plot": plot, "export": export, "publish": publish}
FIELDS = {field.name for field in dataclasses.fields(Params)}


def module_file(module):
    """The file of a project module (`finetune.core.tasks` -> finetune/core/tasks.py), or None."""
    path = PROJECT_ROOT.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def modules_loaded_by(path):
    """Project modules `path` imports (with the packages each import runs on its way), and the files
    beside it that it loads by name, as `evaluate.load` loads finetune/scoring/glue_metric.py."""
    modules, files = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "with_name"
                    and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).endswith(".py")):
                files.add(path.with_name(node.args[0].value))
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] in PROJECT_PACKAGES:
                modules.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return {module_file(module) for module in modules if module_file(module)} | files


def files_run_by(module):
    """Every project file that `python -m <module>` executes, following imports."""
    seen, pending = set(), [module_file(module)]
    while pending:
        path = pending.pop()
        if path not in seen:
            seen.add(path)
            pending.extend(modules_loaded_by(path))
    return {str(path.relative_to(PROJECT_ROOT)) for path in seen}


def code_files_declared(deps):
    """The project's Python files that `deps` name, directly or through a folder above them."""
    files = set()
    for dep in deps:
        path = PROJECT_ROOT / dep
        if dep.split("/")[0] in PROJECT_PACKAGES:
            candidates = path.rglob("*.py") if path.is_dir() else [path]
            files.update(str(file.relative_to(PROJECT_ROOT)) for file in candidates if "__pycache__" not in file.parts)
    return files


def stage_module(stage):
    return re.fullmatch(r"python -m ([\w.]+)", STAGES[stage]["cmd"]).group(1)


def declared_params(stage):
    """The keys a stage's `params:` lists; every key for `params.yaml:` (the whole file)."""
    keys = set()
    for entry in STAGES[stage].get("params", []):
        keys |= FIELDS if entry == {"params.yaml": None} else {entry}
    return keys


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_the_deps_name_exactly_the_modules_a_stage_runs(stage):
    run = files_run_by(stage_module(stage))
    declared = code_files_declared(STAGES[stage]["deps"])
    assert sorted(run - declared) == []  # run but not a dep: a change would not re-run the stage
    assert sorted(declared - run) == []  # a dep never run: a change would re-run it for nothing


def test_the_module_check_finds_a_missing_and_a_superfluous_dep():
    run = files_run_by("stages.evaluate")
    assert {"finetune/scoring/scores.py", "finetune/scoring/glue_metric.py", "finetune/scoring/curves.py",
            "finetune/core/metrics.py"} <= run
    assert "finetune/training/trainer.py" not in run
    assert code_files_declared(["finetune/scoring", "data/tokenized"]) == {
        "finetune/scoring/scores.py", "finetune/scoring/glue_metric.py", "finetune/scoring/curves.py"}


@contextlib.contextmanager
def recording_param_reads():
    """{stage: the Params fields its code read}, recorded while stages run in the block; reads
    inside load_params (validation reads every field) are not the stage's."""
    reads, current, loading = {}, [None], [False]

    def recording_getattribute(self, name):
        if current[0] and not loading[0] and name in FIELDS:
            reads.setdefault(current[0], set()).add(name)
        return object.__getattribute__(self, name)

    def loading_params(*arguments, **keywords):
        loading[0] = True
        try:
            return load_params(*arguments, **keywords)
        finally:
            loading[0] = False

    def run(stage, main=None):
        current[0] = stage
        try:
            (main or STAGE_MODULES[stage].main)()
        finally:
            current[0] = None

    load_params = params_module.load_params
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Params, "__getattribute__", recording_getattribute)
        for module in (params_module, *STAGE_MODULES.values()):
            patch.setattr(module, "load_params", loading_params)
        yield run, reads


@pytest.fixture(scope="module")
def params_read(tmp_path_factory, tiny_params, glue_parquet_dir):
    """The params each stage reads, from running every stage on a GLUE task and download also on
    your own data (which reads the column params instead of the GLUE task's)."""
    project_dir, own_dir = tmp_path_factory.mktemp("reads"), tmp_path_factory.mktemp("own-data-reads")
    write_own_data(own_dir / "reviews", "csv", ["review"], "sentiment", ["negative", "positive"])
    with recording_param_reads() as (run, reads), pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLUE_DIR", str(glue_parquet_dir))
        patch.chdir(project_dir)
        write_params(project_dir, tiny_params)
        for stage in STAGE_MODULES:
            run(stage)
        patch.chdir(own_dir)
        write_params(own_dir, tiny_params, dataset="reviews", text_columns=["review"], label_column="sentiment")
        run("download")
    return reads


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_the_params_lists_name_exactly_the_params_a_stage_reads(stage, params_read):
    read, declared = params_read.get(stage, set()), declared_params(stage)
    assert sorted(read - declared) == []  # read but not declared: DVC would not re-run it when it changes
    assert sorted(declared - read) == []  # declared but never read: a change would re-run it for nothing


def test_the_params_check_counts_a_stages_reads_but_not_validations(tiny_params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, tiny_params)
    with recording_param_reads() as (run, reads):
        run("example", lambda: params_module.load_params().lr)
        assert params_module.load_params().seed == 42  # outside a stage: not recorded
    assert reads == {"example": {"lr"}}
