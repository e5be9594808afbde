"""README.md agrees with the files it documents, so that they cannot drift apart again."""

import re

from finetune.core.params import read_yaml
from tests.repos import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()


def parameter_table(readme):
    """{key: default as written} of README's table of parameters (`a` / `b` rows name two keys)."""
    table = readme.partition("| key | default | meaning |\n|---|---|---|\n")[2].partition("\n\n")[0]
    rows = {}
    for line in table.splitlines():
        keys, defaults = (re.findall(r"`([^`]+)`", cell) for cell in line.split(" | ")[:2])
        assert len(keys) == len(defaults), line
        rows.update(zip(keys, defaults, strict=True))
    return rows


def test_the_parameter_table_gives_params_yamls_defaults():
    params = read_yaml((PROJECT_ROOT / "params.yaml").read_text())
    table = parameter_table(README)
    assert len(table) >= 10
    assert [key for key in table if key not in params] == []
    assert {key: default for key, default in table.items() if read_yaml(default) != params[key]} == {}


def test_the_parameter_check_sees_a_drifted_default():
    drifted = README.replace("| `lr` | `1.0e-4` |", "| `lr` | `5.0e-5` |")
    params = read_yaml((PROJECT_ROOT / "params.yaml").read_text())
    assert {key for key, default in parameter_table(drifted).items() if read_yaml(default) != params[key]} == {"lr"}


def test_the_first_commands_need_no_folder_of_this_repository():
    commands = README.partition("## Two commands\n\n```bash\n")[2].partition("```")[0]
    assert commands.splitlines()[0].startswith("make run ") and "GLUE_DIR" not in commands


def test_the_make_targets_it_names_exist():
    targets = set(re.findall(r"^([\w-]+):", (PROJECT_ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"(?:`|^)make ([\w-]+)", README, re.M))  # in code, not prose
    assert {"run", "test", "test-fast"} <= named and named - targets == set()


def test_the_code_layout_names_every_folder_of_the_package():
    folders = {path.name for path in (PROJECT_ROOT / "finetune").iterdir() if path.is_dir() and path.name != "__pycache__"}
    layout = README.partition("## Code layout")[2].partition("\n## ")[0]
    assert {folder for folder in folders if f"`{folder}/`" not in layout} == set()
