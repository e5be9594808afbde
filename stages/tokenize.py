"""Stage `tokenize`: sentence pairs to token ids with the checkpoint's tokenizer, to data/tokenized/.

Truncated to `max_length` and left unpadded: batches are padded to their own longest
pair at training time (dynamic padding), which is much cheaper than padding to max_length.
"""

import time

from stages.common import PipelineError, atomic_output, run_stage
from stages.data import load_raw_splits
from stages.model import load_tokenizer
from stages.params import load_params
from stages.paths import TOKENIZED_DIR


def main():
    params = load_params()
    started = time.perf_counter()
    tokenizer = load_tokenizer(params.checkpoint)
    if params.max_length > tokenizer.model_max_length:
        raise PipelineError(
            f"params.yaml: max_length must be <= {tokenizer.model_max_length} for checkpoint "
            f"{params.checkpoint!r}, got {params.max_length}"
        )
    raw_splits = load_raw_splits()

    def tokenize_pairs(batch):
        return tokenizer(batch["sentence1"], batch["sentence2"], truncation=True, max_length=params.max_length)

    tokenized = raw_splits.map(tokenize_pairs, batched=True, remove_columns=["sentence1", "sentence2"])
    tokenized = tokenized.rename_column("label", "labels")
    with atomic_output(TOKENIZED_DIR) as staging:
        tokenized.save_to_disk(str(staging))

    lengths = [len(ids) for ids in tokenized["train"]["input_ids"]]
    truncated = sum(length == params.max_length for length in lengths)
    print(
        f"tokenize: {sum(map(len, tokenized.values()))} pairs, train mean {sum(lengths) / len(lengths):.1f} "
        f"tokens, {truncated} at max_length {params.max_length} -> {TOKENIZED_DIR}/ "
        f"in {time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    run_stage(main)
