"""What differs between tasks, in one table: text columns, labels, splits and metrics.

A GLUE task is one word (`dataset_config`), as in Hugging Face's `run_glue.py`; a user's own
data describes itself (`text_columns`, `label_column`, and the labels found in its train
split). The download stage writes the task of the run to data/raw/task.json; every later
stage reads it from there, so they all agree on what is being learnt.
"""

import dataclasses
import json

from finetune.core.errors import PipelineError
from finetune.core.metrics import LOSS, task_metrics
from finetune.core.paths import TASK_FILE

# The label of an example without one (GLUE's test sets): -1 for a class, NaN for a regression.
NO_LABEL = -1
# What every evaluation scores besides the validation splits: a fixed random subset of train as
# large as validation, so that the gap between what the model fits and what generalises shows.
TRAIN_SUBSET = "train_subset"


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    text_columns: tuple  # one column (single sentences) or two (pairs), as named in data/raw
    label_names: tuple | None  # class names in label order; None: a regression task
    metrics: tuple  # what the evaluate stage reports besides loss, as <split>_<metric> keys
    main_metric: str  # what `best_model_metric: auto` watches
    validation_splits: tuple = ("validation",)
    test_splits: tuple = ("test",)
    multi_label: bool = False  # each example has a set of the labels (a sigmoid each), not one class

    @property
    def regression(self):
        return self.label_names is None

    @property
    def num_labels(self):
        return 1 if self.regression else len(self.label_names)

    @property
    def splits(self):
        return ("train", *self.validation_splits, *self.test_splits)

    @property
    def evaluated_splits(self):
        return (*self.validation_splits, *self.test_splits)

    @property
    def evaluation_sets(self):
        """The sets each evaluation during training scores, in the order Trainer logs them."""
        return (TRAIN_SUBSET, *self.validation_splits)

    @property
    def diagnosis_metric(self):
        """The score the diagnosis compares across train and validation."""
        return "pearson" if self.regression else "micro_f1" if self.multi_label else "accuracy"

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"


def _pair(name, text_columns, label_names, *metrics, main_metric=None, **splits):
    """A GLUE task: its official `metrics` (the first its main one unless named), then the metric
    table's for every task of its kind."""
    return Task(name, text_columns, label_names, task_metrics(metrics, label_names, own_data=False),
                main_metric or metrics[0], **splits)


# GLUE's tasks as the Hub's nyu-mll/glue serves them (columns, label names), with GLUE's
# official metrics; MRPC and QQP are watched by F1, their class-imbalanced metric.
GLUE_TASKS = {
    "cola": _pair("cola", ("sentence",), ("unacceptable", "acceptable"), "matthews_correlation"),
    "sst2": _pair("sst2", ("sentence",), ("negative", "positive"), "accuracy"),
    "mrpc": _pair("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "accuracy", "f1",
                  main_metric="f1"),
    "qqp": _pair("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), "accuracy", "f1",
                 main_metric="f1"),
    "stsb": _pair("stsb", ("sentence1", "sentence2"), None, "pearson", "spearmanr"),
    "mnli": _pair("mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), "accuracy",
                  validation_splits=("validation_matched", "validation_mismatched"),
                  test_splits=("test_matched", "test_mismatched")),
    "qnli": _pair("qnli", ("question", "sentence"), ("entailment", "not_entailment"), "accuracy"),
    "rte": _pair("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), "accuracy"),
    "wnli": _pair("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"), "accuracy"),
}


def glue_task(config):
    if config not in GLUE_TASKS:
        raise PipelineError(f"params.yaml: dataset_config {config!r} is not a GLUE task "
                            f"(one of {', '.join(GLUE_TASKS)})")
    return GLUE_TASKS[config]


def own_data_task(name, text_columns, label_names, has_test, multi_label=False):
    """The task of a user's own files, with the metrics finetune/core/metrics.py gives its kind."""
    metrics = task_metrics((), label_names, own_data=True, multi_label=multi_label)
    return Task(name, tuple(text_columns), None if label_names is None else tuple(label_names), metrics, metrics[0],
                test_splits=("test",) if has_test else (), multi_label=multi_label)


def load_task():
    """The task of this run, as the download stage wrote it."""
    if not TASK_FILE.is_file():
        raise PipelineError(f"{TASK_FILE} not found: run `dvc repro download` first")
    fields = json.loads(TASK_FILE.read_text())
    return Task(**{key: tuple(value) if isinstance(value, list) else value for key, value in fields.items()})


def best_model_metric(params, task):
    """`best_model_metric` checked against the task's metrics (`auto`: its main one)."""
    metric = task.main_metric if params.best_model_metric == "auto" else params.best_model_metric
    if metric not in (*task.metrics, LOSS):
        raise PipelineError(f"params.yaml: best_model_metric must be auto, loss or one of the {task.name} metrics "
                            f"({', '.join(task.metrics)}), got {params.best_model_metric!r}")
    return metric
