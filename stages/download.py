"""Stage `download`: the task's data (a GLUE task from the Hub or GLUE_DIR, or your own files),
checked and normalised, to data/raw/ with task.json and provenance.json."""

import collections
import statistics
import time

from finetune.core.errors import run_stage
from finetune.core.outputs import atomic_output, write_json
from finetune.core.params import HUB_DATASET, load_params
from finetune.core.paths import PROVENANCE_FILE, RAW_DIR, TASK_FILE, raw_split_file
from finetune.data.loading import load_data, sha256
from finetune.data.splits import has_labels


def main():
    params = load_params()
    started = time.perf_counter()
    task, splits, source = load_data(params)

    with atomic_output(RAW_DIR) as staging:
        staging.mkdir(parents=True)
        config = params.dataset_config if params.dataset == HUB_DATASET else None  # own data has none
        provenance = {"dataset": params.dataset, "config": config, "source": source, "splits": {}}
        for split in task.splits:
            split_file = staging / raw_split_file(split).name
            splits[split].to_parquet(str(split_file))
            provenance["splits"][split] = {"rows": len(splits[split]), "sha256": sha256(split_file),
                                           **_label_summary(splits[split], task)}
        (staging / TASK_FILE.name).write_text(task.to_json())
        write_json(staging / PROVENANCE_FILE.name, provenance)

    kind = "regression" if task.regression else f"{task.num_labels} {'labels' if task.multi_label else 'classes'}"
    rows = ", ".join(f"{split} {len(splits[split])}" for split in task.splits)
    origin = source["kind"] if source["kind"] == "hub" else f"{source['kind']} {source['layout']} files"
    print(f"download: {task.name} ({kind}): {rows} rows from {origin} -> {RAW_DIR}/ "
          f"in {time.perf_counter() - started:.1f}s")


def _label_summary(split_data, task):
    """Label counts per class name (a classification), or mean and variance (a regression);
    None where the split is unlabelled. A multi-label task's count the examples with each label,
    and name the most common label set (what a model that learnt nothing would predict)."""
    labels = split_data.data.column("label").to_pylist()
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
