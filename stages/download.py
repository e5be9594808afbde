"""Stage `download`: the task's data (a GLUE task from the Hub or GLUE_DIR, or your own files),
checked and normalised, to data/raw/ with task.json and provenance.json.

Each split streams through in chunks (finetune/data/loading.py) into its parquet file: memory stays
flat in the number of rows, and a split that takes a while prints progress lines.
"""

import collections
import contextlib
import statistics
import time

import pyarrow.parquet

from finetune.core.errors import run_stage
from finetune.core.outputs import atomic_output, write_json
from finetune.core.params import HUB_DATASET, load_params
from finetune.core.paths import PROVENANCE_FILE, RAW_DIR, TASK_FILE, raw_split_file
from finetune.data.loading import load_data, sha256
from finetune.data.progress import Progress
from finetune.data.splits import has_labels


def main():
    params = load_params()
    started = time.perf_counter()
    task, splits, source = load_data(params)

    data_dir_existed = RAW_DIR.parent.is_dir()
    try:
        with atomic_output(RAW_DIR) as staging:
            staging.mkdir(parents=True)
            provenance = _write_splits(params, task, splits, source, staging)
    except BaseException:  # a bad row found while streaming: no data/ folder left behind that was not there
        if not data_dir_existed:
            with contextlib.suppress(OSError):
                RAW_DIR.parent.rmdir()
        raise

    kind = "regression" if task.regression else f"{task.num_labels} {'labels' if task.multi_label else 'classes'}"
    rows = ", ".join(f"{split} {provenance['splits'][split]['rows']}" for split in task.splits)
    origin = source["kind"] if source["kind"] == "hub" else f"{source['kind']} {source['layout']} files"
    print(f"download: {task.name} ({kind}): {rows} rows from {origin} -> {RAW_DIR}/ "
          f"in {time.perf_counter() - started:.1f}s")


def _write_splits(params, task, splits, source, folder):
    """Each split's parquet file, task.json and provenance.json in `folder`; the provenance."""
    config = params.dataset_config if params.dataset == HUB_DATASET else None  # own data has none
    provenance = {"dataset": params.dataset, "config": config, "source": source, "splits": {}}
    for split in task.splits:
        split_file = folder / raw_split_file(split).name
        rows = _write_split(splits[split], split_file, Progress(f"download: {split}", None))
        labels = pyarrow.parquet.read_table(split_file, columns=["label"]).column("label").to_pylist()
        provenance["splits"][split] = {"rows": rows, "sha256": sha256(split_file), **_label_summary(labels, task)}
    (folder / TASK_FILE.name).write_text(task.to_json())
    write_json(folder / PROVENANCE_FILE.name, provenance)
    return provenance


def _write_split(chunks, path, progress):
    """Each normalised chunk (a Dataset) as the row groups of one parquet file; the rows written."""
    rows, writer = 0, None
    try:
        for chunk in chunks:
            writer = writer or pyarrow.parquet.ParquetWriter(path, chunk.data.schema)
            writer.write_table(chunk.data.table)
            rows += len(chunk)
            progress.advance(len(chunk))
    finally:
        if writer:
            writer.close()
    return rows


def _label_summary(labels, task):
    """Label counts per class name (a classification), or mean and variance (a regression);
    None where the split is unlabelled. A multi-label task's count the examples with each label,
    and name the most common label set (what a model that learnt nothing would predict)."""
    labels = labels if has_labels(task, labels) else None
    if task.multi_label and labels is None:
        return {"label_counts": None, "most_common_label_set": None}
    if task.multi_label:
        counts = collections.Counter(label for label_set in labels for label in label_set)
        # Of sets as common as each other, the one seen first (most_common keeps insertion order).
        common_set, common_rows = collections.Counter(map(tuple, labels)).most_common(1)[0]
        return {"label_counts": {name: counts[index] for index, name in enumerate(task.label_names)},
                "most_common_label_set": {"labels": [task.label_names[index] for index in common_set],
                                          "rows": common_rows}}
    if task.regression:
        return {"label_mean": statistics.fmean(labels) if labels else None,
                "label_variance": statistics.pvariance(labels) if labels else None}
    counts = collections.Counter(labels or ())
    return {"label_counts": {name: counts[index] for index, name in enumerate(task.label_names)} if labels else None}


if __name__ == "__main__":
    run_stage(main)
