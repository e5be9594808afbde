"""The speed benchmark runs both recipes on the same pairs and reports them (never timings as a pass mark)."""

import re

import pytest

from stages import download, tokenize
from tests.conftest import run_module

pytestmark = pytest.mark.slow


def test_benchmark_times_both_recipes_on_the_same_pairs(project):
    download.main()
    tokenize.main()
    result = run_module("finetune.commands.benchmark", project, ["--pairs", "16", "--seeds", "1", "2"])
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^(course|stage) +seed +(\d): (\d+) pairs in [\d.]+s = [\d.]+ pairs/s$", result.stdout, re.M)
    assert rows == [("course", "1", "16"), ("stage", "1", "16"), ("course", "2", "16"), ("stage", "2", "16")]
    assert re.search(r"^mean pairs/s: course [\d.]+, stage [\d.]+, ratio [\d.]+x$", result.stdout, re.M)


def test_full_benchmark_scores_both_recipes_on_validation(project):
    download.main()
    tokenize.main()
    result = run_module("finetune.commands.benchmark", project, ["--full"])
    assert result.returncode == 0, result.stderr
    # The course loop runs its 3 epochs of batches of 8 (48 pairs each); the stage its params' 2 epochs.
    scores = r"validation accuracy [01]\.\d{4}, f1 [01]\.\d{4}, balanced_accuracy [01]\.\d{4}, macro_f1 [01]\.\d{4}$"
    assert re.search(r"^course +seed +42: 144 pairs .* " + scores, result.stdout, re.M)
    assert re.search(r"^stage +seed +42: 96 pairs .* " + scores, result.stdout, re.M)
    assert re.search(r"^stage validation over 1 seed\(s\): accuracy [01]\.\d{4} ± 0\.0000", result.stdout, re.M)


def test_benchmark_without_tokenized_data_says_what_to_run(project):
    result = run_module("finetune.commands.benchmark", project, [])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "error: data/tokenized not found: run `dvc repro tokenize` first"


def test_benchmark_runs_one_recipe_when_asked(project):
    download.main()
    tokenize.main()
    result = run_module("finetune.commands.benchmark", project, ["--pairs", "16", "--recipes", "course"])
    assert result.returncode == 0, result.stderr
    assert re.findall(r"^(course|stage) +seed", result.stdout, re.M) == ["course"]
    assert re.search(r"^mean pairs/s: course [\d.]+$", result.stdout, re.M)
