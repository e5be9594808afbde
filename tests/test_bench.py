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


def test_scale_bench_prints_each_stage_of_each_size_with_its_memory(project):
    # The memory of a stage's own process (and of tokenize's parts, were there any) is sampled:
    # a Python process with datasets loaded holds well over 50 MB; a broken reading prints 0.
    result = run_module("finetune.commands.benchmark", project, ["--scale", "300", "600", "--keep", "generated"])
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^ +([\d,]+) (download|tokenize) +[\d.]+ +([\d,]+) +([\d,]+) +([\d,]+)$", result.stdout, re.M)
    assert [(size, stage) for size, stage, *_ in rows] == [
        ("300", "download"), ("300", "tokenize"), ("600", "download"), ("600", "tokenize")]
    assert all(int(own.replace(",", "")) > 50 for *_, own, _resident in rows)
    # train 600 rows, validation and test a tenth each, at least 100 (header line aside)
    assert [len((project / "generated" / "rows-600" / "pairs" / f"{split}.csv").read_text().splitlines()) - 1
            for split in ("train", "validation", "test")] == [600, 100, 100]
