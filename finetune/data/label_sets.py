"""A multi-label task's labels: each row's set of label names (topic tags, emotions), read from a
column of lists (json, jsonl, parquet), from text cells split at `label_delimiter` (csv, tsv), or
from 0/1 columns named in `label_column`, one per label.

data/raw keeps each row's label indices, ascending (a Sequence of ClassLabel, as the Hub's
multi-label data sets have them); None marks a row without labels, which only a test file may have.
"""

import dataclasses

from finetune.core.errors import PipelineError
from finetune.core.tasks import NO_LABEL


@dataclasses.dataclass(frozen=True)
class LabelSetColumns:
    """Where a split's label sets are: `column` (lists or delimited names), or 0/1 `columns`."""
    column: str | None
    columns: tuple  # the 0/1 columns, one per label, when `column` is None
    delimiter: str
    allow_empty: bool

    @property
    def names(self):
        """The file columns read."""
        return (self.column,) if self.column else self.columns


def multi_hot(label_set, num_labels):
    """A row's label indices as one 0/1 float per label; NO_LABEL in each for a row without labels (None)."""
    if label_set is None:
        return [float(NO_LABEL)] * num_labels
    flags = [0.0] * num_labels
    for label in label_set:
        flags[label] = 1.0
    return flags


def label_set_columns(label_column, delimiter, allow_empty, train_table):
    """The LabelSetColumns of a multi-label task, or None for one label per row: several 0/1
    columns, a delimiter, or a label column holding lists in train make it multi-label."""
    if isinstance(label_column, tuple):
        return LabelSetColumns(None, label_column, "", allow_empty)
    if delimiter or any(isinstance(value, list) for value in train_table[label_column]):
        return LabelSetColumns(label_column, (), delimiter, allow_empty)
    return None


def train_label_names(path, table, source):
    """The task's label names: the 0/1 columns as named, or every name found in train, sorted."""
    if source.column is None:
        return list(source.columns)
    names = set()
    for row, value in enumerate(table[source.column]):
        names.update(_names_in_cell(path, row, value, source) or ())
    if len(names) < 2:
        raise PipelineError(f"{path}: column {source.column!r} names {len(names)} distinct label(s) "
                            f"({', '.join(sorted(names))}); a multi-label task needs at least two")
    return sorted(names)


def label_sets(path, table, source, label_names, unlabelled_allowed):
    """Each row's label indices, ascending; None for a row without labels where `unlabelled_allowed`
    (a test file, which may also lack the label columns)."""
    rows = max(len(values) for values in table.values())
    if unlabelled_allowed and not all(column in table for column in source.names):
        return [None] * rows
    index = {name: position for position, name in enumerate(label_names)}
    sets = []
    for row in range(rows):
        if source.column is None:
            names = _names_in_flags(path, row, table, source.columns)
        else:
            names = _names_in_cell(path, row, table[source.column][row], source)
        if names is None:
            if not unlabelled_allowed:
                where = f"column {source.column!r}" if source.column else f"columns {', '.join(source.columns)}"
                raise PipelineError(f"{path} row {row}: no label in {where} (only a test file may lack labels)")
            sets.append(None)
            continue
        if not names and not source.allow_empty:
            raise PipelineError(f"{path} row {row}: no label set (an empty label list); set allow_empty_labels: "
                                f"true if a text may have none")
        unknown = [name for name in names if name not in index]
        if unknown:
            raise PipelineError(f"{path} row {row}: label {unknown[0]!r} is not one of train's labels "
                                f"({', '.join(label_names)})")
        sets.append(sorted(index[name] for name in names))
    return sets


def _names_in_cell(path, row, value, source):
    """The set of names in one cell, or None when the cell is empty (no label). With a delimiter and
    allow_empty_labels, an empty text cell is an empty set: csv has no other way to write one."""
    if value is None or (isinstance(value, float) and value != value):
        return set() if source.delimiter and source.allow_empty else None
    if source.delimiter and isinstance(value, str):
        if not value.strip():
            return set() if source.allow_empty else None
        parts = [part.strip() for part in value.split(source.delimiter)]
        if not all(parts):
            raise PipelineError(f"{path} row {row}: label list {value!r} has an empty name between "
                                f"{source.delimiter!r} delimiters")
        return set(parts)
    if not isinstance(value, list):
        raise PipelineError(f"{path} row {row}: column {source.column!r} holds {value!r}, not a list of label names"
                            + ("" if source.delimiter else " (set label_delimiter for names in one text cell)"))
    names = set()
    for name in value:
        if isinstance(name, bool) or not isinstance(name, (str, int)) or not str(name).strip():
            raise PipelineError(f"{path} row {row}: {name!r} in column {source.column!r} is not a label name")
        names.add(str(name).strip())
    return names


def _names_in_flags(path, row, table, columns):
    """The names of the 0/1 columns set in one row; None when every cell is empty."""
    cells = [table[column][row] for column in columns]
    if all(cell is None or (isinstance(cell, str) and not cell.strip()) for cell in cells):
        return None
    names = set()
    for column, cell in zip(columns, cells, strict=True):
        flag = _flag(cell)
        if flag is None:
            raise PipelineError(f"{path} row {row}: column {column!r} must be 0 or 1, got {cell!r}")
        if flag:
            names.add(column)
    return names


def _flag(cell):
    if isinstance(cell, bool):
        return cell
    if isinstance(cell, str):
        cell = cell.strip()
    if cell in (0, 1, "0", "1"):  # 1.0 == 1 too: a parquet or pandas float column
        return bool(int(cell))
    return None
