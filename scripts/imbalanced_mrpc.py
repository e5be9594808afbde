"""Build an imbalanced binary data set from GLUE MRPC, as your own data: train keeps every
`equivalent` pair and only as many `not_equivalent` ones as make them `--share` of it (10% by
default, against MRPC's 33%); validation and test stay as MRPC has them, so their per-class
scores show what the skew in train did. Written as parquet files with class names as labels.

    python scripts/imbalanced_mrpc.py $GLUE_DIR/mrpc data/mrpc-imbalanced
    dvc exp run -S dataset=data/mrpc-imbalanced -S 'text_columns=[sentence1,sentence2]' -S label_column=label
    dvc exp run ... -S class_weights=balanced

The selection is seeded (`--seed`): the same files every time. MRPC's licence is its own
(Microsoft Research Paraphrase Corpus); the files are for your runs, not for the repository.
"""

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

NAMES = ("not_equivalent", "equivalent")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mrpc_dir", type=Path, help="the folder of MRPC's {train,validation,test}-*.parquet")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--share", type=float, default=0.10, help="not_equivalent's share of train (0.10)")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    if not 0 < arguments.share < 1:
        parser.error(f"--share must be in (0, 1), got {arguments.share}")
    arguments.output_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        (path,) = sorted(arguments.mrpc_dir.glob(f"{split}-*.parquet"))
        table = pq.read_table(path).to_pydict()
        rows = range(len(table["label"]))
        if split == "train":
            rare = [row for row in rows if table["label"][row] == 0]
            common = [row for row in rows if table["label"][row] == 1]
            keep = round(len(common) * arguments.share / (1 - arguments.share))
            chosen = np.random.default_rng(arguments.seed).choice(rare, size=keep, replace=False)
            rows = sorted([*common, *chosen.tolist()])
        # Test's labels are hidden in GLUE (-1): kept unlabelled, as your own test file may be.
        labels = [NAMES[table["label"][row]] if table["label"][row] >= 0 else None for row in rows]
        output = pa.table({"sentence1": [table["sentence1"][row] for row in rows],
                           "sentence2": [table["sentence2"][row] for row in rows], "label": labels})
        pq.write_table(output, arguments.output_dir / f"{split}.parquet")
        counts = {name: labels.count(name) for name in NAMES}
        print(f"{split}: {len(rows)} rows, {counts}")


if __name__ == "__main__":
    main()
