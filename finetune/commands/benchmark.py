"""Training speed: the Hugging Face course's plain loop against the project's train stage.

Both train the same model on the same tokenized MRPC train split (`dvc repro tokenize`
first) over the same number of pairs, one after the other, each in a new process:

  course  the loop of the course's chapter 3, as written there: fp32, batches of 8 in random
          order with dynamic padding, torch AdamW at 5e-5, linear decay over 3 epochs;
  stage   the train stage's Trainer with the params in params.yaml (precision, length-
          grouped batches, ...), without its mid-run evaluations.

It prints pairs/s of each and their ratio. `--full` instead trains each for the whole
3 epochs (the stage: its params' whole run, evaluations included) and adds validation
the task's validation metrics of the final model. Timings say how fast, never whether a test passes.

    finetune bench                   # 800 pairs each, seed 42
    finetune bench --full --seeds 1 2 3
"""

import argparse
import concurrent.futures
import dataclasses
import multiprocessing
import statistics
import tempfile
import time

import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, get_scheduler, set_seed

from finetune.commands import inference_bench, scale_bench
from finetune.core.errors import run_stage
from finetune.core.params import load_params
from finetune.core.tasks import load_task
from finetune.data.loading import load_tokenized
from finetune.models import load_classifier, load_tokenizer
from finetune.scoring.scores import predictions_of, task_metrics
from finetune.training.evaluations import evaluation_sets
from finetune.training.trainer import build_trainer

COURSE_BATCH_SIZE = 8
COURSE_LR = 5e-5
COURSE_EPOCHS = 3
RECIPES = ["course", "stage"]


def course_loop(checkpoint, task, train_split, validation_split, tokenizer, pairs, seed, threshold=0.5):
    """The course's training loop; returns (seconds, pairs trained, validation scores or None)."""
    set_seed(seed)
    collator = DataCollatorWithPadding(tokenizer)
    train_dataloader = DataLoader(train_split, shuffle=True, batch_size=COURSE_BATCH_SIZE, collate_fn=collator)
    model = load_classifier(checkpoint, task)
    optimizer = torch.optim.AdamW(model.parameters(), lr=COURSE_LR)
    training_steps = COURSE_EPOCHS * len(train_dataloader)
    lr_scheduler = get_scheduler("linear", optimizer=optimizer, num_warmup_steps=0,
                                 num_training_steps=training_steps)
    steps = training_steps if pairs is None else pairs // COURSE_BATCH_SIZE

    model.train()
    started = time.perf_counter()
    step = 0
    while step < steps:
        for batch in train_dataloader:
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad()
            step += 1
            if step == steps:
                break
    seconds = time.perf_counter() - started
    scores = _validation_scores(task, model, validation_split, collator, threshold) if pairs is None else None
    return seconds, steps * COURSE_BATCH_SIZE, scores


def train_stage_run(params, task, train_split, validation_split, tokenized, tokenizer, pairs, seed):
    """The train stage's Trainer; returns (seconds, pairs trained, validation scores or None)."""
    if pairs is None:
        params = dataclasses.replace(params, seed=seed)
        evaluation_sets_or_none, _ = evaluation_sets(task, tokenized, params.eval_sample_size)
    else:
        params = dataclasses.replace(params, seed=seed, max_steps=pairs // params.train_batch_size)
        evaluation_sets_or_none = None
    set_seed(seed)
    model = load_classifier(params.checkpoint, task, dropout=params.dropout)
    with tempfile.TemporaryDirectory(prefix="bench-") as output_dir:
        trainer, _ = build_trainer(params, task, model, tokenizer, train_split, evaluation_sets_or_none, output_dir)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    trained_pairs = trainer.state.global_step * params.train_batch_size
    scores = _validation_scores(task, trainer.model, validation_split, DataCollatorWithPadding(tokenizer),
                                params.multi_label_threshold) if pairs is None else None
    return seconds, trained_pairs, scores


def _validation_scores(task, model, validation_split, collator, threshold):
    """The task's metrics of `model` on validation, in fp32, the same way for both recipes."""
    model.eval()
    predictions = []
    with torch.inference_mode():
        for batch in DataLoader(validation_split, batch_size=64, collate_fn=collator):
            predictions.append(model(**{k: v for k, v in batch.items() if k != "labels"}).logits)
    return task_metrics(task, predictions_of(task, torch.cat(predictions).numpy(), threshold),
                        validation_split["labels"])


def _timed_run(recipe, seed, pairs):
    """One recipe for one seed; returns (seconds, pairs trained, validation scores or None)."""
    params, task = load_params(), load_task()
    tokenizer = load_tokenizer(params.checkpoint)
    tokenized = load_tokenized()
    train_split = tokenized["train"].remove_columns("idx")
    validation_split = tokenized[task.validation_splits[0]].remove_columns("idx")
    if recipe == "course":
        return course_loop(params.checkpoint, task, train_split, validation_split, tokenizer, pairs, seed,
                           params.multi_label_threshold)
    return train_stage_run(params, task, train_split, validation_split, tokenized, tokenizer, pairs, seed)


def _in_fresh_process(function, *arguments):
    """Each run in a new process, as each would run alone: run after the course loop in the
    same process, the stage trained ~15% slower (33.9 against 39.7 pairs/s, measured)."""
    # An executor lets its worker exit on its own (a Pool kills it, which leaks its semaphores).
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as executor:
        return executor.submit(function, *arguments).result()


def add_arguments(parser):
    parser.add_argument("--pairs", type=int, default=800, help="training pairs timed per recipe (default 800)")
    parser.add_argument("--full", action="store_true", help="train each recipe for its whole run and score it")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="one run of each recipe per seed")
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=RECIPES,
                        help="which recipes to run (default both; the ratio needs both)")
    parser.add_argument("--scale", type=int, nargs="+", metavar="ROWS",
                        help="instead: each stage's wall time, rows/s and peak memory on generated data of these "
                             "many train rows (finetune/commands/scale_bench.py)")
    scale_bench.add_arguments(parser)
    inference_bench.add_arguments(parser)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    run(parser.parse_args(argv))


def run(arguments):
    if arguments.scale:
        return scale_bench.run(arguments)
    if arguments.inference:
        return inference_bench.run(arguments)
    pairs = None if arguments.full else arguments.pairs

    params = load_params()
    load_tokenized()  # here first, for its error if `dvc repro tokenize` has not run
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {params.checkpoint}; "
          f"stage params: precision {params.precision}, batch {params.train_batch_size}, lr {params.lr}, "
          f"dropout {params.dropout}, freeze_embeddings {params.freeze_embeddings}, cpu_speedups {params.cpu_speedups}, "
          f"group_by_length {params.group_by_length}")

    rows = []
    for seed in arguments.seeds:
        for recipe in arguments.recipes:
            rows.append((recipe, seed, *_in_fresh_process(_timed_run, recipe, seed, pairs)))
            _print_row(rows[-1])

    speed = {recipe: statistics.mean(trained / seconds for name, _, seconds, trained, _ in rows if name == recipe)
             for recipe in arguments.recipes}
    print("\nmean pairs/s: " + ", ".join(f"{recipe} {speed[recipe]:.1f}" for recipe in arguments.recipes)
          + (f", ratio {speed['stage'] / speed['course']:.2f}x" if len(speed) == 2 else ""))
    if arguments.full:
        for recipe in arguments.recipes:
            scores = [row[4] for row in rows if row[0] == recipe]
            summary = ", ".join(f"{metric} {_mean_std([score[metric] for score in scores])}"
                                for metric in scores[0])
            print(f"{recipe} validation over {len(scores)} seed(s): {summary}")


def _print_row(row):
    recipe, seed, seconds, trained_pairs, scores = row
    line = f"{recipe:6} seed {seed:>3}: {trained_pairs} pairs in {seconds:.1f}s = {trained_pairs / seconds:.1f} pairs/s"
    if scores:
        line += "; validation " + ", ".join(f"{metric} {value:.4f}" for metric, value in scores.items())
    print(line, flush=True)


def _mean_std(values):
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


if __name__ == "__main__":
    run_stage(main)
