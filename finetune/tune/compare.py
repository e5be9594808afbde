"""Runs compared with their noise in view: groups of runs that differ only in their seed, ranked by
a validation metric averaged over seeds, and a paired bootstrap of the difference between two
groups on the same examples.

On MRPC's 408 validation pairs one example is 0.25 accuracy points and another seed moves a
result by a point or more, so a difference is only called a win when the 95% interval of the
difference excludes 0 and both groups have several seeds. The interval resamples the examples
(the same ones for both groups: paired) and, where a group has several seeds, its runs too
(hierarchically), so that it holds both sources of noise; with one run a side it holds the
examples' only, and a lucky seed would pass it.
"""

import dataclasses
import itertools
import math
import statistics

import numpy as np

from finetune.core.errors import PipelineError
from finetune.core.metrics import higher_is_better, label_matrix, metric_values
from finetune.core.params import HUB_DATASET, configuration
from finetune.core.tasks import GLUE_TASKS, load_task

CONFIDENCE = 0.95


@dataclasses.dataclass
class Group:
    """Runs whose params differ in `seed` (or `trial`) only."""
    params: dict  # every param but NOT_CONFIGURATION
    runs: list

    def scores(self, key):
        return [run.evaluation[key] for run in self.runs]

    def summary(self, key):
        """(mean, sample standard deviation or NaN for one run) of `key` over the group's runs."""
        values = self.scores(key)
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan

    @property
    def seeds(self):
        return sorted(run.params["seed"] for run in self.runs)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A candidate group against a baseline group on `key`, positive when the candidate is better."""
    key: str
    difference: float
    low: float
    high: float
    examples: int
    candidate_runs: int
    baseline_runs: int
    ranked_by: str = ""  # the key the groups were ranked by, where predictions cannot score it (a loss)

    @property
    def seeds_on_both_sides(self):
        return min(self.candidate_runs, self.baseline_runs) >= 2

    @property
    def beyond_noise(self):
        return self.low > 0 and self.seeds_on_both_sides

    def sentence(self):
        if self.low <= 0 <= self.high:
            verdict = "no winner beyond noise (the interval contains 0)"
        else:
            direction = "better" if self.low > 0 else "worse"
            verdict = (f"{direction} beyond noise" if self.seeds_on_both_sides else
                       f"{direction} on these examples ({self._one_seed()}: example noise only)")
        ranked = (f"; ranked by {self.ranked_by}, the metric the study optimised, which predictions cannot score: "
                  "compared on the task's main metric") if self.ranked_by else ""
        return (f"{self.key} {self.difference:+.4f} [{self.low:+.4f}, {self.high:+.4f}] ({CONFIDENCE:.0%} paired "
                f"bootstrap over {self.examples} examples and {self.candidate_runs} + {self.baseline_runs} runs): "
                f"{verdict}{ranked}")

    def _one_seed(self):
        if self.candidate_runs == self.baseline_runs:
            return "one seed each"
        return f"one seed of the {'candidate' if self.candidate_runs == 1 else 'baseline'}"


def task_of(params):
    """The task of a run's params: a GLUE task from the table, your own data from data/raw/task.json."""
    if params["dataset"] == HUB_DATASET:
        return GLUE_TASKS[params["dataset_config"]]
    task = load_task()
    if task.name != params["dataset"].rstrip("/").split("/")[-1]:
        raise PipelineError(f"data/raw/task.json is the task of another dataset than {params['dataset']}: "
                            "run `dvc repro download` first")
    return task


def seeds_for(count, first):
    """`count` seeds to run a configuration over: the baseline's own first, then 1, 2, ... (skipping it)."""
    return [first, *[seed for seed in range(1, count + 1) if seed != first]][:count]


def confirmation_seeds(count, used):
    """The first `count` positive seeds not in `used`."""
    return list(itertools.islice((seed for seed in itertools.count(1) if seed not in used), count))


def group_runs(runs):
    """Groups of runs with equal params but for their seed, in the order first seen, one run per seed
    (`one_run_per_seed`)."""
    groups = {}
    for run in runs:
        params = configuration(run.params)
        groups.setdefault(repr(sorted(params.items())), Group(params, [])).runs.append(run)
    for group in groups.values():
        group.runs = one_run_per_seed(group.runs, lambda run: run.params["seed"], lambda run: run.params.get("trial"))
    return list(groups.values())


def one_run_per_seed(runs, seed_of, trial_of):
    """`runs` of one configuration, one per seed, in the order first seen. A seed run twice (a trial
    and a plain run of its params, the commit's run and an experiment equal to it) is one result,
    not two: counted twice, it would shrink the spread and the interval. The plain run is kept,
    the first seen among equals."""
    kept = {}
    for run in runs:
        seed = seed_of(run)
        if seed not in kept or (trial_of(kept[seed]) and not trial_of(run)):
            kept[seed] = run
    return list(kept.values())


def ranked(groups, split, metric):
    """Best first by the mean of `<split>_<metric>` over seeds."""
    sign = -1 if higher_is_better(metric) else 1
    return sorted(groups, key=lambda group: sign * group.summary(f"{split}_{metric}")[0])


def compare(task, candidate, baseline, split, metric, resamples=10_000, seed=0, ranked_by=""):
    """The paired bootstrap of `metric` on `split`: candidate group's mean over its runs minus
    the baseline's (the other way round for a metric where lower is better)."""
    references, candidate_predictions = _predictions(task, candidate.runs, split)
    baseline_references, baseline_predictions = _predictions(task, baseline.runs, split)
    if not np.array_equal(references, baseline_references):
        raise PipelineError(f"the runs were scored on different {split} examples: compare runs of one task and data")
    generator = np.random.default_rng(seed)
    sign = 1 if higher_is_better(metric) else -1
    differences = []
    chunk = max(1, 1000 // task.num_labels) if task.multi_label else 1000  # resamples x examples (x labels) at once
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        rows = generator.integers(0, len(references), size=(count, len(references)))
        means = [_mean_over_runs(task, metric, predictions, references, rows, generator)
                 for predictions in (candidate_predictions, baseline_predictions)]
        differences.append(sign * (means[0] - means[1]))
    differences = np.concatenate(differences)
    point = sign * (_score(task, metric, candidate_predictions, references).mean()
                    - _score(task, metric, baseline_predictions, references).mean())
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return Comparison(f"{split}_{metric}", float(point), float(low), float(high), len(references),
                      len(candidate.runs), len(baseline.runs), ranked_by)


def _mean_over_runs(task, metric, predictions, references, rows, generator):
    """Each resample's metric averaged over runs drawn with replacement (all of them for one run)."""
    values = np.stack([metric_values([metric], run[rows], references[rows], task.num_labels, task.multi_label)[metric]
                       for run in predictions])  # runs x resamples
    if len(predictions) == 1:
        return values[0]
    drawn = generator.integers(0, len(predictions), size=(values.shape[1], len(predictions)))
    return values[drawn, np.arange(values.shape[1])[:, None]].mean(axis=1)


def _score(task, metric, predictions, references):
    return np.array([metric_values([metric], run, references, task.num_labels, task.multi_label)[metric]
                     for run in predictions])


def labelled(rows):
    """Whether a predictions file's rows all have a label (a split without labels has them empty)."""
    return bool(rows) and all(row["label"] for row in rows)


def _predictions(task, runs, split):
    """(references, runs x examples predictions) from the runs' prediction files, in idx order."""
    rows_of_runs = []
    for run in runs:
        rows = run.predictions(split)
        if rows is None:
            raise PipelineError(f"{run.label} has no metrics/predictions/{split}.csv to compare")
        if not labelled(rows):
            raise PipelineError(f"{run.label}'s metrics/predictions/{split}.csv has no labels to compare on")
        rows_of_runs.append(sorted(rows, key=lambda row: int(row["idx"])))
    for run, rows in zip(runs, rows_of_runs, strict=True):
        if [row["label"] for row in rows] != [row["label"] for row in rows_of_runs[0]]:
            raise PipelineError(f"{run.label} was scored on other {split} examples than {runs[0].label}")
    if task.multi_label:  # a 0/1 per label, from the JSON lists of names
        return (label_matrix(rows_of_runs[0], "label", task.label_names, True),
                np.array([label_matrix(rows, "prediction", task.label_names, True) for rows in rows_of_runs]))
    if task.regression:
        convert = float
    else:
        index = {name: position for position, name in enumerate(task.label_names)}
        convert = index.__getitem__
    references = np.array([convert(row["label"]) for row in rows_of_runs[0]])
    return references, np.array([[convert(row["prediction"]) for row in rows] for rows in rows_of_runs])
