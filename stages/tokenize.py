"""Stage `tokenize`: sentences or pairs to token ids with the checkpoint's tokenizer, to data/tokenized/.

Truncated to `max_length` and left unpadded: batches are padded to their own longest
pair at training time (dynamic padding), which is much cheaper than padding to max_length.
"""

import hashlib
import json
import time

import datasets

from finetune.core.errors import PipelineError, run_stage
from finetune.core.outputs import atomic_output
from finetune.core.params import load_params
from finetune.core.paths import TOKENIZED_DIR, raw_split_file
from finetune.core.tasks import NO_LABEL, load_task
from finetune.data.loading import load_raw_splits, sha256
from finetune.models import load_tokenizer


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
    raw_splits = load_raw_splits(task)

    def tokenize_texts(batch):  # one sentence or a pair, as the task has
        texts = [batch[column] for column in task.text_columns]
        return tokenizer(*texts, truncation=True, max_length=params.max_length)

    tokenized = datasets.DatasetDict({
        split: split_data.map(tokenize_texts, batched=True, remove_columns=list(task.text_columns),
                              new_fingerprint=_fingerprint(params, split))
        for split, split_data in raw_splits.items()
    }).rename_column("label", "labels")
    if task.regression:  # the model's squared-error loss takes float32 targets
        tokenized = tokenized.cast_column("labels", datasets.Value("float32"))
    if task.multi_label:  # binary cross-entropy takes a 0/1 float per label; an unlabelled row is all NO_LABEL
        tokenized = datasets.DatasetDict({
            split: split_data.map(lambda row: {"labels": _multi_hot(row["labels"], task.num_labels)},
                                  features=_multi_hot_features(split_data), new_fingerprint=_fingerprint(params, split, 1))
            for split, split_data in tokenized.items()})
    with atomic_output(TOKENIZED_DIR) as staging:
        tokenized.save_to_disk(str(staging))

    lengths = [len(ids) for ids in tokenized["train"]["input_ids"]]
    truncated = sum(length == params.max_length for length in lengths)
    print(
        f"tokenize: {sum(map(len, tokenized.values()))} examples, train mean {sum(lengths) / len(lengths):.1f} "
        f"tokens, {truncated} at max_length {params.max_length} -> {TOKENIZED_DIR}/ "
        f"in {time.perf_counter() - started:.1f}s"
    )


def _multi_hot(label_set, num_labels):
    if label_set is None:
        return [float(NO_LABEL)] * num_labels
    flags = [0.0] * num_labels
    for label in label_set:
        flags[label] = 1.0
    return flags


def _multi_hot_features(split_data):
    features = split_data.features.copy()
    features["labels"] = datasets.Sequence(datasets.Value("float32"))
    return features


def _fingerprint(params, split, step=0):
    """The tokenized split's `datasets` fingerprint (saved in its state.json), from the stage's
    declared inputs only. datasets' own hashes the map function's closure, which holds the
    tokenizer's install path and every param: another clone, venv or train-only param gave
    another data/tokenized hash, and so re-ran train for nothing."""
    inputs = [params.checkpoint, params.max_length, sha256(raw_split_file(split)), *([step] if step else [])]
    return hashlib.sha256(json.dumps(inputs).encode()).hexdigest()


if __name__ == "__main__":
    run_stage(main)
