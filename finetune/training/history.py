"""The train stage's histories: Trainer's log entries as two CSVs keyed by the global step,
and the figures metrics/train.json takes from them."""

from finetune.core.metrics import LOSS, higher_is_better
from finetune.core.outputs import write_csv

# Trainer's log keys -> our CSV columns. Evaluations run on each validation split and on a
# fixed random subset of train of the same size, so the train/validation gap shows in one file.
TRAIN_HISTORY_COLUMNS = {"step": "step", "epoch": "epoch", "loss": "train_loss",
                         "learning_rate": "learning_rate", "grad_norm": "grad_norm"}


def evaluation_history_columns(task):
    return {"step": "step", "epoch": "epoch", **{
        f"eval_{name}_{metric}": f"{name}_{metric}" for name in task.evaluation_sets
        for metric in (LOSS, *task.metrics)
    }}


def history_rows(log_history, columns):
    """Rows of `columns`, one per global step that logged any of them.

    Trainer logs each evaluation set as its own entry; rows merge those of one step.
    """
    rows = {}
    for entry in log_history:
        values = {column: entry[key] for key, column in columns.items() if key in entry}
        if set(values) - {"step", "epoch"}:
            rows.setdefault(entry["step"], {}).update(values)
    return [{column: row.get(column) for column in columns.values()} for _, row in sorted(rows.items())]


def write_history(path, rows, columns):
    header = list(columns.values())
    write_csv(path, header, [[row[column] for column in header] for row in rows])


def mean_train_loss(train_rows):
    """Mean loss per step up to the last logged step, from the logged window means
    (Trainer's own figure covers only the steps since a resume)."""
    steps = [row["step"] for row in train_rows]
    window_lengths = [step - previous for previous, step in zip([0, *steps], steps, strict=False)]
    return sum(row["train_loss"] * length for row, length in zip(train_rows, window_lengths, strict=True)) / steps[-1]


def best_evaluation(evaluation_rows, split, metric):
    """The evaluation Trainer's load_best_model_at_end would pick: first best wins ties."""
    sign = -1 if higher_is_better(metric) else 1
    return min(evaluation_rows, key=lambda row: (sign * row[f"{split}_{metric}"], row["step"]))
