"""Reading data files as what they are: parquet, GLUE's TSVs and your csv, tsv, json, jsonl.

Text files are decoded as UTF-8, with or without a byte-order mark and with any line ending;
anything else stops with the file, the byte offset and line, and a hint. Each reader returns
{column: values}, of a whole file or chunk by chunk; finetune/data/loading.py checks and normalises them.
"""

import codecs
import csv
import dataclasses
import itertools
import json

import pyarrow
import pyarrow.parquet

from finetune.core.errors import PipelineError

# Rows read at a time: memory stays flat in a file's length (a million pairs were 1.5 GB read whole).
CHUNK_ROWS = 50_000


@dataclasses.dataclass(frozen=True)
class GlueTsv:
    folder: str
    files: dict  # split -> file name
    text: dict  # the task's text column -> the TSV column it is read from
    label: str  # the TSV column of the label (test files have none: unlabelled)
    labels: str  # how a label reads: "index" (0, 1, ...), "name" (the task's class name), "float" (a score)
    headerless: tuple = ()  # files without a header line...
    columns: tuple = ()  # ...whose columns are these, by position


_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
_MNLI_FILES = {"train": "train.tsv", "validation_matched": "dev_matched.tsv", "validation_mismatched": "dev_mismatched.tsv",
               "test_matched": "test_matched.tsv", "test_mismatched": "test_mismatched.tsv"}
_PAIR = {"sentence1": "sentence1", "sentence2": "sentence2"}

# GLUE's TSV files as its download script writes them: unquoted (sentences hold bare "), one
# header line (except CoLA's train and dev), test files without the label column.
GLUE_TSV = {
    "cola": GlueTsv("CoLA", _FILES, {"sentence": "sentence"}, "label", "index", headerless=("train.tsv", "dev.tsv"),
                    columns=("source", "label", "original_annotation", "sentence")),
    "sst2": GlueTsv("SST-2", _FILES, {"sentence": "sentence"}, "label", "index"),
    "mrpc": GlueTsv("MRPC", _FILES, {"sentence1": "#1 String", "sentence2": "#2 String"}, "Quality", "index"),
    "qqp": GlueTsv("QQP", _FILES, {"question1": "question1", "question2": "question2"}, "is_duplicate", "index"),
    "stsb": GlueTsv("STS-B", _FILES, _PAIR, "score", "float"),
    "mnli": GlueTsv("MNLI", _MNLI_FILES, {"premise": "sentence1", "hypothesis": "sentence2"}, "gold_label", "name"),
    "qnli": GlueTsv("QNLI", _FILES, {"question": "question", "sentence": "sentence"}, "label", "name"),
    "rte": GlueTsv("RTE", _FILES, _PAIR, "label", "name"),
    "wnli": GlueTsv("WNLI", _FILES, _PAIR, "label", "index"),
}


def table_chunks(path, rows=CHUNK_ROWS):
    """{column: values} of one of your files, `rows` rows at a time, at least one chunk (perhaps of no
    rows: its columns are the header's). A JSON array is parsed whole (use JSON lines or parquet for
    data larger than memory)."""
    if path.suffix == ".parquet":
        yield from parquet_chunks([path], rows)
    elif path.suffix in (".csv", ".tsv"):
        yield from delimited_chunks(path, "," if path.suffix == ".csv" else "\t", csv.QUOTE_MINIMAL, rows=rows)
    else:
        yield from _json_chunks(path, rows)


def joined(chunks):
    """One {column: values} of consecutive chunks; a column missing from a chunk is None there."""
    table, count = {}, 0
    for chunk in chunks:
        size = max((len(values) for values in chunk.values()), default=0)
        for column in chunk:
            table.setdefault(column, [None] * count)
        for column, values in table.items():
            values.extend(chunk.get(column, [None] * size))
        count += size
    return table


def _json_chunks(path, rows):
    """{column: values} of a JSON array of records, or of JSON lines (one record a line)."""
    lines = utf8_lines(path)
    first = next(lines, "")
    if path.suffix == ".json" and first.lstrip().startswith("["):
        text = first + "".join(lines)
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise PipelineError(f"{path}: not valid JSON (line {error.lineno}: {error.msg})") from None
        for start in range(0, max(len(records), 1), rows):
            yield _columns(path, records[start:start + rows], start)
        return
    records, start = [], 0
    for line_number, line in enumerate(itertools.chain([first], lines), start=1):
        try:
            records.extend([json.loads(line)] if line.strip() else [])
        except json.JSONDecodeError as error:
            raise PipelineError(f"{path}: not valid JSON lines (line {line_number}: {error.msg})") from None
        if len(records) == rows:
            yield _columns(path, records, start)
            records, start = [], start + rows
    if records or start == 0:
        yield _columns(path, records, start)


def _columns(path, records, first_row):
    columns = {}
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            raise PipelineError(f"{path} row {first_row + row}: not a JSON object ({_short(record)})")
        for column in record:
            columns.setdefault(column, [None] * row)
        for column, values in columns.items():
            values.append(record.get(column))
    return columns


def delimited_chunks(path, delimiter, quoting, names=None, strict=True, rows=CHUNK_ROWS):
    """{column: values} of a CSV or TSV file, `rows` rows at a time; `names`: its columns when it has no
    header line. A short row's missing cells are None; `strict`: a row with more cells than columns is an error."""
    reader = csv.reader(utf8_lines(path), delimiter=delimiter, quoting=quoting)
    try:
        lines = (row for row in reader if row)  # a blank line is no row
        header = list(names) if names else next(lines, [])
        columns, row_number = {column: [] for column in header}, -1
        for row_number, row in enumerate(lines):
            if strict and len(row) > len(header):
                raise PipelineError(f"{path} row {row_number}: {len(row)} cells but {len(header)} columns "
                                    f"({', '.join(header)}); a text with an unquoted {delimiter!r}?")
            for index, values in enumerate(columns.values()):
                values.append(row[index] if index < len(row) else None)
            if (row_number + 1) % rows == 0:
                yield columns
                columns = {column: [] for column in header}
    except csv.Error as error:
        raise PipelineError(f"{path}: unreadable {path.suffix[1:]} file (line {reader.line_num}: {error})") from None
    if row_number == -1 or (row_number + 1) % rows:
        yield columns


def utf8_lines(path):
    """The lines of a text file, decoded as UTF-8 (a byte-order mark is dropped, CRLF kept for csv)."""
    try:
        with open(path, "rb") as binary_file:
            offset = 0
            for line_number, line in enumerate(binary_file, start=1):
                if line_number == 1 and line.startswith(codecs.BOM_UTF8):
                    line, offset = line[len(codecs.BOM_UTF8):], len(codecs.BOM_UTF8)
                try:
                    yield line.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise PipelineError(f"{path}: not UTF-8 (byte 0x{line[error.start]:02x} at offset "
                                        f"{offset + error.start}, line {line_number}); save it as UTF-8") from None
                offset += len(line)
    except OSError as error:
        raise PipelineError(f"{path}: unreadable ({error.strerror})") from None


def parquet_chunks(paths, rows=CHUNK_ROWS, columns=None):
    """{column: values} of parquet files one after the other, `rows` rows at a time, at least one chunk."""
    yielded = False
    for path in paths:
        try:
            parquet_file = pyarrow.parquet.ParquetFile(path)
            names = columns or parquet_file.schema_arrow.names
            for batch in parquet_file.iter_batches(batch_size=rows, columns=columns):
                yielded = True
                yield batch.to_pydict()
        except (pyarrow.ArrowException, OSError) as error:
            raise PipelineError(f"{path}: unreadable parquet file ({error})") from None
    if not yielded:
        yield {name: [] for name in names}


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
