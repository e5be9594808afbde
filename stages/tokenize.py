"""Stage `tokenize`: sentences or pairs to token ids with the checkpoint's tokenizer, to data/tokenized/.

Truncated to `max_length` and left unpadded: batches are padded to their own longest
pair at training time (dynamic padding), which is much cheaper than padding to max_length.
Splits stream from disk in batches (memory-mapped Arrow in, Arrow files out): memory stays flat
in the number of rows; a split that takes a while prints progress lines (rows/s, time left).
A large split is tokenized in contiguous parts by several processes, one a core: the fast tokenizer
encodes a batch on every core, but the rest of `map` (Arrow in and out) runs on one; the files are
the same bytes whatever the number of processes.
"""

import hashlib
import json
import tempfile
import time

import datasets

from finetune.core.errors import PipelineError, run_stage
from finetune.core.outputs import atomic_output
from finetune.core.params import load_params
from finetune.core.paths import TOKENIZED_DIR, raw_split_file
from finetune.core.tasks import load_task
from finetune.data.label_sets import multi_hot
from finetune.data.loading import load_raw_splits, sha256, token_counts
from finetune.data.progress import Progress
from finetune.models import load_tokenizer
from finetune.processes import cpu_threads

# Rows each process must have before a split is shared out: at 100,000 rows in two processes
# the start-up cost what they saved (docs/measurements.md).
ROWS_PER_PROCESS = 100_000


def main():
    params = load_params()
    started = time.perf_counter()
    tokenizer = load_tokenizer(params.checkpoint)
    task = load_task()
    # Truncation must leave each text at least one token beside the special ones ([CLS], [SEP]).
    shortest = tokenizer.num_special_tokens_to_add(pair=len(task.text_columns) == 2) + len(task.text_columns)
    if not shortest <= params.max_length <= tokenizer.model_max_length:
        raise PipelineError(
            f"params.yaml: max_length must be in [{shortest}, {tokenizer.model_max_length}] for checkpoint "
            f"{params.checkpoint!r} on {task.name}'s {'pairs' if len(task.text_columns) == 2 else 'sentences'}, "
            f"got {params.max_length}"
        )
    with tempfile.TemporaryDirectory(prefix="tokenize-") as scratch:
        tokenized = _tokenized_splits(params, task, tokenizer, load_raw_splits(task, scratch), scratch)
        with atomic_output(TOKENIZED_DIR) as staging:
            tokenized.save_to_disk(str(staging))

    lengths = token_counts(tokenized["train"])
    truncated = int((lengths == params.max_length).sum())
    print(
        f"tokenize: {sum(map(len, tokenized.values()))} examples, train mean {lengths.mean():.1f} "
        f"tokens, {truncated} at max_length {params.max_length} -> {TOKENIZED_DIR}/ "
        f"in {time.perf_counter() - started:.1f}s"
    )


def _tokenized_splits(params, task, tokenizer, raw_splits, scratch):
    """Each split tokenized into Arrow files in `scratch`, a batch of rows at a time."""
    def tokenize_texts(batch, rank, progress):  # one sentence or a pair, as the task has
        texts = [batch[column] for column in task.text_columns]
        progress[rank or 0].advance(len(texts[0]))
        return tokenizer(*texts, truncation=True, max_length=params.max_length)

    def mapped(split, split_data, function, step, **options):
        return split_data.map(function, new_fingerprint=_fingerprint(params, split, step),
                              cache_file_name=f"{scratch}/{split}-{step}.arrow", **options)

    def tokenized_split(split, split_data):
        parts = _part_rows(len(split_data), max(1, min(cpu_threads(), len(split_data) // ROWS_PER_PROCESS)))
        progress = [Progress(f"tokenize: {split}" + (f", part {part} of {len(parts)}" if len(parts) > 1 else ""), rows)
                    for part, rows in enumerate(parts, 1)]
        parted = mapped(split, split_data, tokenize_texts, 0, batched=True, remove_columns=list(task.text_columns),
                        with_rank=True, num_proc=len(parts) if len(parts) > 1 else None, fn_kwargs={"progress": progress})
        # Parts put together lose the split's name, one part keeps it: named here, the same bytes either way.
        return datasets.concatenate_datasets([parted], split=datasets.NamedSplit(split))

    tokenized = datasets.DatasetDict({
        split: tokenized_split(split, split_data) for split, split_data in raw_splits.items()
    }).rename_column("label", "labels")
    if task.regression:  # the model's squared-error loss takes float32 targets
        tokenized = tokenized.cast_column("labels", datasets.Value("float32"))
    if task.multi_label:  # binary cross-entropy takes a 0/1 float per label; an unlabelled row is all NO_LABEL
        tokenized = datasets.DatasetDict({
            split: mapped(split, split_data, lambda row: {"labels": multi_hot(row["labels"], task.num_labels)}, 1,
                          features=_multi_hot_features(split_data))
            for split, split_data in tokenized.items()})
    return tokenized


def _multi_hot_features(split_data):
    features = split_data.features.copy()
    features["labels"] = datasets.Sequence(datasets.Value("float32"))
    return features


def _part_rows(rows, processes):
    """The rows of each of `processes` contiguous parts, as `datasets` shards a split for `map`."""
    share, rest = divmod(rows, processes)
    return [share + (part < rest) for part in range(processes)]


def _fingerprint(params, split, step=0):
    """The tokenized split's `datasets` fingerprint (saved in its state.json), from the stage's
    declared inputs only. datasets' own hashes the map function's closure, which holds the
    tokenizer's install path and every param: another clone, venv or train-only param gave
    another data/tokenized hash, and so re-ran train for nothing. 32 characters: `datasets` gives
    each part of a split shared out the fingerprint and "_00000_of_00002", and takes at most 64."""
    inputs = [params.checkpoint, params.max_length, sha256(raw_split_file(split)), *([step] if step else [])]
    return hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:32]


if __name__ == "__main__":
    run_stage(main)
