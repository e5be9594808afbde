"""The code layout holds: every module path that a tracked file names exists, and no module of the
package or the stages outgrows a read (STYLE.md: ~300 lines)."""

import re
import subprocess

from tests.repos import PROJECT_ROOT

# A path of the package or the stages, to a module (.py) or a folder (a trailing /), not inside a
# longer name such as mrpc_dvc_finetune/.
NAMED_PATH = re.compile(r"(?<![\w./-])((?:finetune|stages)/[\w/]*(?:\.py|/))")
MODULE_LINES = 300


def tracked_texts():
    """{path: text} of the files Git tracks, binary ones (figures) left out."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    texts = {}
    for name in filter(None, names):
        path = PROJECT_ROOT / name
        if path.is_file():  # a tracked file deleted in the work tree names nothing
            try:
                texts[name] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
    return texts


def paths_named(text):
    return set(NAMED_PATH.findall(text))


def test_every_module_path_a_tracked_file_names_exists():
    # No test builds such a path in a temporary copy on purpose today; one that did would be named
    # here, with the reason, rather than the check loosened.
    texts = tracked_texts()
    assert {"README.md", "pyproject.toml", "dvc.yaml", "params.yaml", "stages/train.py"} <= set(texts)
    missing = {f"{name}: {path}" for name, text in texts.items() for path in paths_named(text)
               if not (PROJECT_ROOT / path).exists()}
    assert sorted(missing) == []


def test_the_path_check_sees_a_moved_module():
    moved = "finetune/" + "params.py"  # written whole, this file would name a module that does not exist
    text = f"read by every stage through {moved} (now finetune/core/params.py); mrpc_dvc_finetune/x.py"
    assert paths_named(text) == {moved, "finetune/core/params.py"}
    assert [path for path in paths_named(text) if not (PROJECT_ROOT / path).exists()] == [moved]


def test_no_module_outgrows_a_read():
    modules = [path for folder in ("finetune", "stages") for path in (PROJECT_ROOT / folder).rglob("*.py")]
    assert len(modules) > 30
    lengths = {str(path.relative_to(PROJECT_ROOT)): len(path.read_text().splitlines()) for path in modules}
    assert {name: lines for name, lines in lengths.items() if lines > MODULE_LINES} == {}
