"""Stage `download`: MRPC from the Hub (or GLUE_DIR offline), checked, to data/raw/."""

import time

from finetune.data import has_labels, load_mrpc, sha256
from finetune.errors import run_stage
from finetune.outputs import atomic_output, write_json
from finetune.params import load_params
from finetune.paths import PROVENANCE_FILE, RAW_DIR, raw_split_file


def main():
    params = load_params()
    started = time.perf_counter()
    splits, source = load_mrpc(params.dataset, params.dataset_config)

    with atomic_output(RAW_DIR) as staging:
        provenance = {"dataset": params.dataset, "config": params.dataset_config, "source": source, "splits": {}}
        for split, split_data in splits.items():
            split_file = staging / raw_split_file(split).name
            split_data.to_parquet(str(split_file))
            labelled = has_labels(split_data)
            provenance["splits"][split] = {
                "rows": len(split_data),
                "label_counts": _label_counts(split_data) if labelled else None,
                "sha256": sha256(split_file),
            }
        write_json(staging / PROVENANCE_FILE.name, provenance)

    rows = ", ".join(f"{split} {len(data)}" for split, data in splits.items())
    print(f"download: {rows} rows from {source['kind']} -> {RAW_DIR}/ in {time.perf_counter() - started:.1f}s")


def _label_counts(split_data):
    names = split_data.features["label"].names
    labels = split_data["label"]
    return {name: labels.count(label) for label, name in enumerate(names)}


if __name__ == "__main__":
    run_stage(main)
