"""When train evaluates, and on which rows: a run's evaluation cost follows its steps, not its data's size.

Scoring all of validation and as much of train every 50 steps is nothing on MRPC (408 pairs) but
dominates a run on QQP: 34,000 steps of 3 epochs would make ~680 evaluations of ~81,000 pairs,
about 17 times the forward passes of the training itself. So by default (`eval_steps: auto`) a run
evaluates at most EVALUATIONS_PER_RUN times, no closer than FEWEST_STEPS_APART (MRPC keeps its
every 50 steps), and each evaluation scores fixed samples of `eval_sample_size` rows, stratified by
label, of validation and of train. Early stopping, the pruner and the diagnosis read those curves;
the evaluate stage scores all of validation once, for the model that is kept. Where a split is no
larger than the sample, it is scored whole (MRPC's validation).
"""

import math

import numpy as np

from finetune.core.errors import PipelineError
from finetune.core.params import AUTO
from finetune.core.tasks import TRAIN_SUBSET
from finetune.data.loading import sorted_by_length

EVALUATIONS_PER_RUN = 20
FEWEST_STEPS_APART = 50
# Fixed, unlike `seed`: every run of a data set is measured on the same rows.
SAMPLE_SEED = 0
# A regression's labels are stratified by these quantile bins.
REGRESSION_BINS = 10


def run_steps(params, train_rows):
    """The optimizer steps of the run, as Trainer counts them: max_steps, else epochs x batches per epoch."""
    if params.max_steps > 0:
        return params.max_steps
    return math.ceil(params.epochs * math.ceil(train_rows / params.train_batch_size))


def cadence(params, steps):
    """(eval_steps, save_steps) of a run of `steps` steps, `auto` resolved."""
    eval_steps = params.eval_steps
    if eval_steps == AUTO:
        eval_steps = max(FEWEST_STEPS_APART, math.ceil(steps / EVALUATIONS_PER_RUN))
    save_steps = eval_steps if params.save_steps == AUTO else params.save_steps
    if params.early_stopping_patience > 0 and save_steps % eval_steps:
        raise PipelineError(f"params.yaml: save_steps must be a multiple of eval_steps ({eval_steps} for this run's "
                            f"{steps} steps) with early stopping, which keeps the best evaluation's checkpoint "
                            f"(or auto: at every evaluation), got {params.save_steps!r}")
    return eval_steps, save_steps


def stratified_sample(labels, size, task):
    """Sorted row numbers of a fixed sample of `size` rows (all rows where there are no more), each
    class as common as in the split (largest remainders; a regression's by label decile). A multi-label
    task's rows, whose label sets are too many to stratify by, are drawn uniformly."""
    rows = len(labels)
    generator = np.random.default_rng(SAMPLE_SEED)
    if rows <= size:
        return np.arange(rows)
    if task.multi_label:
        return np.sort(generator.choice(rows, size, replace=False))
    labels = np.asarray(labels)
    if task.regression:
        edges = np.nanquantile(labels, np.linspace(0, 1, REGRESSION_BINS + 1)[1:-1])
        labels = np.searchsorted(edges, labels)
    strata, members = np.unique(labels, return_inverse=True)
    counts = np.bincount(members, minlength=len(strata))
    shares = counts * size / rows
    taken = np.floor(shares).astype(int)
    leftover = size - taken.sum()
    taken[np.argsort(-(shares - taken), kind="stable")[:leftover]] += 1
    chosen = [generator.choice(np.flatnonzero(members == stratum), taken[stratum], replace=False)
              for stratum in range(len(strata))]
    return np.sort(np.concatenate(chosen))


def evaluation_sets(task, tokenized, sample_size):
    """({set name: rows in length order}, {set name: {"rows": scored, "of": the split's}}): each
    validation split's sample, and a sample of train as large as the first one's."""
    sets, sizes = {}, {}
    for split in task.validation_splits:
        data = tokenized[split].remove_columns("idx")
        sets[split] = data.select(stratified_sample(_labels(data, task), sample_size, task))
        sizes[split] = {"rows": len(sets[split]), "of": len(data)}
    train = tokenized["train"].remove_columns("idx")
    subset = train.select(stratified_sample(_labels(train, task), len(sets[task.validation_splits[0]]), task))
    sizes = {TRAIN_SUBSET: {"rows": len(subset), "of": len(train)}, **sizes}
    return {name: sorted_by_length(data) for name, data in {TRAIN_SUBSET: subset, **sets}.items()}, sizes


def _labels(split_data, task):
    """The labels to stratify by, as NumPy from Arrow (a million rows are not a million Python objects)."""
    if task.multi_label:
        return np.zeros(len(split_data))  # drawn uniformly: only their number counts
    return split_data.with_format("arrow")["labels"].to_numpy()
