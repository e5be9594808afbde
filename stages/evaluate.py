"""Stage `evaluate`: the trained model on validation and test, to metrics/ and predictions/.

Reports accuracy and F1 (the GLUE MRPC metric, from the project's `evaluate` module)
and mean cross-entropy loss per split, plus one CSV row per example for confusion matrices.
A split without labels (GLUE's own test.tsv) gets predictions but no metrics.
"""

import csv
import tempfile
import time

import datasets
import numpy as np
import torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from stages.common import PipelineError, atomic_output, run_stage, write_json
from stages.data import NO_LABEL
from stages.model import device_arguments, load_classifier, load_tokenizer, mrpc_metrics
from stages.params import load_params
from stages.paths import EVALUATED_SPLITS, EVALUATION_METRICS_FILE, MODEL_DIR, TOKENIZED_DIR, predictions_file


def main():
    params = load_params()
    started = time.perf_counter()
    if not (MODEL_DIR / "config.json").is_file():
        raise PipelineError(f"{MODEL_DIR}/ holds no trained model: run `dvc repro train` first")
    tokenizer = load_tokenizer(str(MODEL_DIR))
    model = load_classifier(str(MODEL_DIR))
    tokenized = datasets.load_from_disk(str(TOKENIZED_DIR))

    with tempfile.TemporaryDirectory() as scratch_dir:
        predictor = Trainer(
            model=model,
            args=TrainingArguments(
                output_dir=scratch_dir,
                per_device_eval_batch_size=params.eval_batch_size,
                report_to="none",
                **device_arguments(params.precision),
            ),
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        metrics = {}
        for split in EVALUATED_SPLITS:
            split_data = tokenized[split]
            labelled = NO_LABEL not in set(split_data["labels"])
            # Trainer computes the loss only when labels are present.
            inputs = split_data.remove_columns("idx") if labelled else split_data.remove_columns(["idx", "labels"])
            output = predictor.predict(inputs)
            logits = torch.from_numpy(np.asarray(output.predictions, dtype=np.float32))
            probabilities = logits.softmax(dim=-1)[:, 1].numpy()
            predictions = logits.argmax(dim=-1).numpy()
            _write_predictions(split, split_data["idx"], split_data["labels"], predictions, probabilities)
            if labelled:
                scores = mrpc_metrics(predictions, split_data["labels"])
                metrics[f"{split}_accuracy"] = scores["accuracy"]
                metrics[f"{split}_f1"] = scores["f1"]
                metrics[f"{split}_loss"] = float(output.metrics["test_loss"])
    write_json(EVALUATION_METRICS_FILE, metrics)

    summary = ", ".join(f"{key} {value:.4f}" for key, value in metrics.items())
    print(f"evaluate: {summary} -> {EVALUATION_METRICS_FILE} in {time.perf_counter() - started:.0f}s")


def _write_predictions(split, indices, labels, predictions, probabilities):
    with atomic_output(predictions_file(split)) as staging:
        with open(staging, "w", newline="") as predictions_csv:
            writer = csv.writer(predictions_csv)
            writer.writerow(["idx", "label", "prediction", "probability_equivalent"])
            for row in zip(indices, labels, predictions.tolist(), probabilities.tolist()):
                writer.writerow([row[0], row[1], row[2], f"{row[3]:.6f}"])


if __name__ == "__main__":
    run_stage(main)
