"""The one form every source of data becomes (what the download stage writes to data/raw/), checked.

A split holds the task's text columns (strings, none empty), `label` (class index, -1 where
unlabelled; for a regression a float, NaN where unlabelled; for a multi-label task the label
indices, None where unlabelled, finetune/data/label_sets.py) and `idx` (the row number within the
split). Where the data comes from, and how its files read, is finetune/data/loading.py's.
"""

import dataclasses
import math

import datasets

from finetune.core.errors import PipelineError
from finetune.core.tasks import NO_LABEL


@dataclasses.dataclass(frozen=True)
class LabelReading:
    """How the labels of one split read: `classes` maps a label as written (see `written_label`) to
    its class index (None: a number, for a regression); `unlabelled` holds the values that mean
    "no label" there; `expected` ends the message "label X is not ..."."""
    classes: dict | None
    unlabelled: frozenset
    expected: str


def normalised_chunks(task, name, chunks, text, label, reading, earlier_rows=0):
    """One split as data/raw holds it, checked, chunk by chunk: a Dataset of each {column: values} of
    `chunks`, read from the file(s) `name`, its rows numbered on from the chunk before (and from the
    split's `earlier_rows` in files before this one). `text`: {the task's text column: the file's
    column}; `label`: the file's label column, which a split where `reading` allows unlabelled rows (a
    test split) may lack."""
    first_row = 0
    for table in chunks:
        rows = max((len(values) for values in table.values()), default=0)
        if rows == 0 and first_row == 0:
            raise PipelineError(f"{name}: no rows")
        if rows:
            yield normalised_split(task, name, table, text, label, reading, first_row, earlier_rows)
        first_row += rows


def normalised_split(task, name, table, text, label, reading, first_row=0, earlier_rows=0):
    """One chunk of a split (normalised_chunks), its first row numbered `first_row` in its file."""
    rows = max((len(values) for values in table.values()), default=0)
    unlabelled = math.nan if task.regression else NO_LABEL
    labelled = label in table or not reading.unlabelled
    require_columns(name, table, [*text.values(), *([label] if labelled else [])])
    labels = [] if labelled else [unlabelled] * rows
    for row, value in enumerate(table[label] if labelled else []):
        written = written_label(value)
        if written in reading.unlabelled:
            labels.append(unlabelled)
        elif written is None:
            raise PipelineError(f"{name} row {first_row + row}: no label in column {label!r} (only a test file may "
                                "lack labels)")
        elif reading.classes is None and isinstance(written, (int, float)) and not isinstance(written, bool):
            labels.append(float(written))
        elif reading.classes is not None and written in reading.classes:
            labels.append(reading.classes[written])
        else:
            raise PipelineError(f"{name} row {first_row + row}: label {value!r} is not {reading.expected}")
    return split_dataset(task, name, table, text, labels, first_row, earlier_rows)


def split_dataset(task, name, table, text, labels, first_row=0, earlier_rows=0):
    """The split of data/raw (or a chunk of it, from row `first_row` of its file, after the split's
    `earlier_rows` in files before it): `text`'s columns, checked, the normalised labels and the row
    numbers in the split."""
    if not labels:
        raise PipelineError(f"{name}: no rows")
    texts = {column: checked_texts(name, column, table[file_column], first_row) for column, file_column in text.items()}
    first_idx = earlier_rows + first_row
    return datasets.Dataset.from_dict({**texts, "label": labels, "idx": list(range(first_idx, first_idx + len(labels)))},
                                      features=features(task))


def checked_texts(name, column, values, first_row=0):
    """The cells of a text column, each a non-empty string; else a one-line error naming the file
    `name`, the row (from `first_row`) and the value."""
    for row, text in enumerate(values):
        if not isinstance(text, str) or not text.strip():
            raise PipelineError(f"{name} row {first_row + row}: {column} is empty or not text ({text!r})")
    return values


def written_label(value):
    """A label as written, comparable across formats: a number (also one written as text) as an
    int when whole, an empty cell or NaN as None, anything else as its text."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            return text or None
        if not math.isfinite(value):
            return text
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return None if math.isnan(value) else int(value) if value.is_integer() else value
    return value if isinstance(value, int) or value is None else repr(value)


def require_columns(name, table, columns):
    missing = [column for column in columns if column not in table]
    if missing:
        raise PipelineError(f"{name}: missing column {missing[0]!r} (found: {', '.join(table)})")


def features(task):
    """The columns of data/raw: the text columns, the label (with the class names), the row number."""
    if task.regression:
        label = datasets.Value("float64")
    elif task.multi_label:
        label = datasets.Sequence(datasets.ClassLabel(names=list(task.label_names)))
    else:
        label = datasets.ClassLabel(names=list(task.label_names))
    return datasets.Features({**{column: datasets.Value("string") for column in task.text_columns},
                              "label": label, "idx": datasets.Value("int64")})


def has_labels(task, labels):
    """Whether every example of a split has a label (GLUE's test splits have none)."""
    if task.multi_label:  # data/raw's label indices (None: unlabelled) or tokenized multi-hot rows (all NO_LABEL)
        return all(label_set is not None and NO_LABEL not in label_set for label_set in labels)
    return not any(math.isnan(label) for label in labels) if task.regression else NO_LABEL not in labels
