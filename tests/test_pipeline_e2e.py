"""The real `dvc` CLI on a copy of the project in a fresh Git repository, with tiny params."""

import csv
import io
import json
import re
import sys
import time

import pytest
import yaml

from finetune.core.outputs import read_csv
from tests.browser import drawn_plots, open_page
from tests.repos import (
    ALL_OUTPUTS,
    EVERY_STAGE,
    all_runs,
    copy_repository,
    ran_stages,
    run_metrics,
    run_params,
    runner,
    write_params,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory, reproduced_repository):
    """A copy of the shared reproduced repository: (root, run, what its first `dvc repro` printed)."""
    root = copy_repository(reproduced_repository.root, tmp_path_factory.mktemp("e2e") / "project")
    return root, runner(root, reproduced_repository.env), reproduced_repository.first_repro


def test_repro_produces_every_output_then_nothing_to_do(repo):
    root, run, first_repro = repo
    assert ran_stages(first_repro) == EVERY_STAGE
    assert [output for output in ALL_OUTPUTS if not (root / output).is_file()] == []
    # Git sees only small tracked files: artifacts are ignored and live in DVC's cache.
    run("git", "add", "-A")
    staged = run("git", "diff", "--cached", "--name-only").split()
    assert not [name for name in staged if name.startswith(("data/raw/", "data/tokenized/", "trained_model/", "models/",
                                                                    "metrics/report/"))]
    run("git", "commit", "-q", "-m", "first run")
    second_repro = run("dvc", "repro")
    assert ran_stages(second_repro) == []
    assert "Data and pipelines are up to date" in second_repro


def test_exp_run_lr_reruns_only_training_and_shows_both_runs(repo):
    root, run, _ = repo
    output = run("dvc", "exp", "run", "-S", "lr=1e-5")
    assert ran_stages(output) == EVERY_STAGE[2:]
    assert "Stage 'download' didn't change, skipping" in output
    assert "Stage 'tokenize' didn't change, skipping" in output

    rows = json.loads(run("dvc", "exp", "show", "--json"))
    runs = all_runs(rows)
    assert sorted(run_params(entry)["lr"] for entry in runs) == [1e-05, 0.001]
    for entry in runs:
        # Each run's metrics are those of its own predictions.
        predictions = read_csv_at(run, entry["rev"], "metrics/predictions/validation.csv")
        correct = sum(row["label"] == row["prediction"] for row in predictions) / len(predictions)
        assert run_metrics(entry, "metrics/evaluation.json")["validation_accuracy"] == pytest.approx(correct)
        # Twelve steps of the tiny model learn nothing: no validation accuracy above the majority's.
        diagnosis = run_metrics(entry, "metrics/diagnosis.json")
        assert diagnosis["verdict"] == "underfitting"
        assert diagnosis["best_validation_accuracy"] < diagnosis["majority_baseline"] + 0.02
    # The report lists the experiment's params; DVC wrote `lr: 1e-05` (a string to plain PyYAML),
    # and the train stage got the float.
    assert "| `lr` | `1e-05` |" in (root / "metrics" / "report" / "report.md").read_text()
    assert "lr: 1e-05" in (root / "params.yaml").read_text()
    logged_rates = [float(row["learning_rate"]) for row in read_csv(root / "metrics" / "history" / "train.csv")]
    # Linear decay over 12 steps; the first log, at step 2, gives the rate after one step's update.
    assert max(logged_rates) == pytest.approx(1e-5 * 11 / 12, rel=1e-6)
    run("git", "checkout", "--", "params.yaml", "dvc.lock", "metrics")


def test_queued_seed_sweep_reuses_cached_data_and_aggregates(repo):
    root, run, _ = repo
    run("dvc", "exp", "run", "--queue", "-S", "seed=1,2")
    run("dvc", "queue", "start")
    deadline = time.monotonic() + 400
    while re.search(r"\b(Queued|Running)\b", run("dvc", "queue", "status")):
        assert time.monotonic() < deadline, run("dvc", "queue", "status")
        time.sleep(2)

    rows = json.loads(run("dvc", "exp", "show", "--json"))
    sweep = {run_params(entry)["seed"]: entry for entry in all_runs(rows) if run_params(entry)["lr"] == 0.001}
    assert sorted(sweep) == [1, 2, 42]
    for seed in (1, 2):
        predictions = read_csv_at(run, sweep[seed]["rev"], "metrics/predictions/validation.csv")
        assert run_metrics(sweep[seed], "metrics/evaluation.json")["validation_f1"] == pytest.approx(f1_of(predictions))
        # Each ran in a temporary copy of the repository, where DVC's cache served the data.
        log = run("dvc", "queue", "logs", sweep[seed]["name"])
        assert ran_stages(log) == EVERY_STAGE[2:], log
        assert "Stage 'download' didn't change, skipping" in log and "Stage 'tokenize' didn't change, skipping" in log

    table = run(sys.executable, "-m", "finetune.commands.aggregate_seeds", "--plot", "seeds.png")
    by_lr = {line.split()[0]: line.split() for line in table.splitlines() if line.startswith(("0.001", "1e-05"))}
    assert by_lr["0.001"][1:3] == ["3", "1,2,42"] and "±" in table
    assert by_lr["1e-05"][1:3] == ["1", "42"]
    assert (root / "seeds.png").read_bytes()[:4] == b"\x89PNG"
    (root / "seeds.png").unlink()


def test_branches_compare_with_metrics_diff_and_plots(repo):
    root, run, _ = repo
    run("dvc", "checkout")
    run("git", "checkout", "-q", "-b", "more-steps")
    params = yaml.safe_load((root / "params.yaml").read_text())
    write_params(root, params, epochs=3)
    assert ran_stages(run("dvc", "repro")) == EVERY_STAGE[2:]
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "three epochs")

    params_diff = json.loads(run("dvc", "params", "diff", "main", "--json"))
    assert params_diff["params.yaml"]["epochs"] == {"old": 2, "new": 3, "diff": 1}
    metrics_diff = json.loads(run("dvc", "metrics", "diff", "main", "--json"))
    assert metrics_diff["metrics/train.json"]["trained_steps"] == {"old": 12, "new": 18, "diff": 6}

    run("dvc", "plots", "diff", "main", "-o", "plots_diff")
    page = (root / "plots_diff" / "index.html").read_text()
    assert "Loss (train running mean, train subset, validation)" in page
    assert "Accuracy (train subset and validation)" in page and "main" in page and "workspace" in page
    run("dvc", "plots", "show", "-o", "plots_show")
    page = (root / "plots_show" / "index.html").read_text()
    assert "Confusion matrix (validation)" in page
    # Each curve is drawn once, against the step: no default per-file plots of the CSVs.
    assert sorted(re.findall(r"vegaEmbed\('#(\w+)'", page)) == [
        "accuracy", "confusion_validation", "grad_norm", "learning_rate", "loss",
        *(f"metrics_curves_{kind}_csv" for kind in ("calibration_validation", "precision_recall_validation_equivalent",
                                                     "roc_validation_equivalent")), "system_cpu", "system_memory"]
    assert page.partition("<body>")[2].count("<img") == 11  # the report's PNGs
    # The confusion matrix as the report draws it: actual classes down, predicted across.
    confusion = page[page.index('"Confusion matrix (validation)"'):page.index("vegaEmbed('#confusion_validation'")]
    encoding = json.loads(confusion[confusion.index('"encoding": ') + 12:].partition(', "layer"')[0])
    assert (encoding["x"]["field"], encoding["x"]["title"]) == ("prediction", "predicted")
    assert (encoding["y"]["field"], encoding["y"]["title"]) == ("label", "actual")


def test_plots_show_page_draws_every_plot_in_a_browser_without_network(repo, tmp_path):
    root, run, _ = repo
    run("dvc", "plots", "show")
    page = root / "dvc_plots" / "index.html"
    dom, requested = open_page(page, tmp_path)
    declared = [plot for entry in yaml.safe_load((root / "dvc.yaml").read_text())["plots"] if isinstance(entry, dict)
                for plot in entry]
    assert declared == ["loss", "accuracy", "learning_rate", "grad_norm", "confusion_validation", "metrics/curves/roc",
                        "metrics/curves/precision_recall", "metrics/curves/calibration", "system_cpu", "system_memory"]
    # A folder's plot is one per file in it: the ROC, precision-recall and calibration curves.
    plot_ids = [re.sub(r"[/.]", "_", str(path.relative_to(root))) for plot in declared if (root / plot).is_dir()
                for path in sorted((root / plot).glob("*.csv"))]
    assert len(plot_ids) == 3
    plot_ids += [plot for plot in declared if not (root / plot).is_dir()]
    assert drawn_plots(dom, plot_ids) == set(plot_ids)
    assert dom.partition("<body>")[2].count("<img") == 11  # the report's PNGs
    assert {url for url in requested if not url.startswith("file:")} == set()

    # The same check fails on a page that loads its scripts from a CDN, as DVC's default does.
    cdn_page = tmp_path / "cdn.html"
    cdn_page.write_text(page_with_cdn_scripts(page.read_text()))
    dom, requested = open_page(cdn_page, tmp_path)
    assert drawn_plots(dom, plot_ids) == set()
    assert "https://cdn.jsdelivr.net/npm/vega@5.20.2" in requested


def page_with_cdn_scripts(page):
    """The page, its inlined bundles replaced by DVC's default CDN tags (dvc_render's SCRIPTS)."""
    from dvc_render.vega import VegaRenderer

    head, _, body = page.partition("</head>")
    return head.partition("<script>")[0] + VegaRenderer.SCRIPTS + "</head>" + body


def read_csv_at(run, rev, path):
    """Rows of a CSV that Git tracks, as the commit or experiment `rev` holds it."""
    return list(csv.DictReader(io.StringIO(run("git", "show", f"{rev}:{path}"))))


def f1_of(predictions, positive="equivalent"):
    """F1 of MRPC's class 1 from prediction rows."""
    hits = sum(row["label"] == row["prediction"] == positive for row in predictions)
    predicted = sum(row["prediction"] == positive for row in predictions)
    actual = sum(row["label"] == positive for row in predictions)
    return 2 * hits / (predicted + actual) if predicted + actual else 0.0
