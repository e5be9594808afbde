"""From a verdict to what to try: the course's remedies for each verdict, as param changes tied to
the run's own numbers (finetune/reporting/diagnosis.py gives the verdict and its evidence).

  overfitting   stop where validation loss was lowest; early stopping; weight decay; dropout
  underfitting  a higher learning rate; more epochs; training the embedding layer too
  erratic       a lower learning rate; warm-up; a larger batch with the learning rate scaled
  healthy       nothing to fix: `finetune search` tunes what is already sound

The plot stage writes them into the report; `finetune remedies` prints them and, with --run,
runs each over several seeds as DVC experiments and says which fixed the verdict.
"""

import dataclasses
import math

from finetune.core.params import AUTO
from finetune.reporting.diagnosis import metric_words

# How far a remedy moves a param: a factor of three on a learning rate is a clear step on
# the log scale the course sweeps it on; twice the epochs is what "train longer" means.
LR_FACTOR = 3
EPOCHS_FACTOR = 2
WEIGHT_DECAY = 0.1
DROPOUT = 0.1
WARMUP_RATIO = 0.1
PATIENCE = 2


@dataclasses.dataclass(frozen=True)
class Remedy:
    name: str  # short, for experiment names: remedy-<name>-seed<seed>
    why: str  # what in the run's numbers calls for it
    changes: dict  # {param: value}

    def command(self):
        return "dvc exp run " + " ".join(f"-S {key}={_shown(value)}" for key, value in self.changes.items())


def remedies(task, diagnosis, params, trained_steps):
    """The remedies of the run's verdict, most direct first; [] for a healthy run."""
    verdict = diagnosis["verdict"]
    validation = task.validation_splits[0]
    found = []
    if verdict == "overfitting":
        best_step = diagnosis[f"min_{validation}_loss_step"]
        rise = diagnosis[f"{validation}_loss_rise"]
        found.append(Remedy("stop-at-best", f"{validation} loss was lowest at step {best_step} of {trained_steps}, then "
                            f"rose {rise:.0%}: train for {best_step} steps", {"max_steps": int(best_step)}))
        # Early stopping keeps the best evaluation's checkpoint: one at every evaluation (auto) always fits.
        fits = params.save_steps == AUTO or params.eval_steps != AUTO and params.save_steps % params.eval_steps == 0
        save_steps = params.save_steps if fits else AUTO
        found.append(Remedy("early-stopping", f"stop after {PATIENCE} evaluations without a better {validation} "
                            "score and keep the best model", {"early_stopping_patience": PATIENCE,
                                                             **({"save_steps": save_steps}
                                                                if save_steps != params.save_steps else {})}))
        if params.weight_decay < WEIGHT_DECAY:
            found.append(Remedy("weight-decay", f"train {task.diagnosis_metric} is "
                                f"{diagnosis[f'{task.diagnosis_metric}_gap']:.3f} above {validation}'s: regularise "
                                f"with AdamW's weight decay {WEIGHT_DECAY} (now {params.weight_decay})",
                                {"weight_decay": WEIGHT_DECAY}))
        if params.dropout < DROPOUT:
            found.append(Remedy("dropout", f"the model fits train ({task.diagnosis_metric} gap "
                                f"{diagnosis[f'{task.diagnosis_metric}_gap']:.3f}): dropout {DROPOUT} "
                                f"(now {params.dropout})", {"dropout": DROPOUT}))
    elif verdict == "underfitting":
        found.append(Remedy("higher-lr", f"{_learnt(task, diagnosis, validation)}: a {LR_FACTOR}x higher learning "
                            f"rate", {"lr": _round(params.lr * LR_FACTOR)}))
        found.append(Remedy("more-epochs", f"{_learnt(task, diagnosis, validation)}: {EPOCHS_FACTOR}x the epochs",
                            {"epochs": params.epochs * EPOCHS_FACTOR, **({"max_steps": -1} if params.max_steps > 0
                                                                        else {})}))
        if params.freeze_embeddings:
            found.append(Remedy("train-embeddings", f"{_learnt(task, diagnosis, validation)}: train the embedding "
                                "layer too", {"freeze_embeddings": False}))
    elif verdict == "erratic":
        spread = diagnosis["train_loss_spread"]
        found.append(Remedy("lower-lr", f"train loss jumps by {spread:.2f} of its starting level: a {LR_FACTOR}x "
                            "lower learning rate", {"lr": _round(params.lr / LR_FACTOR)}))
        if params.warmup_ratio < WARMUP_RATIO:
            scheduler = {"lr_scheduler": "constant_with_warmup"} if params.lr_scheduler == "constant" else {}
            found.append(Remedy("warm-up", f"train loss jumps by {spread:.2f}: warm up over the first "
                                f"{WARMUP_RATIO:.0%} of steps", {"warmup_ratio": WARMUP_RATIO, **scheduler}))
        found.append(Remedy("larger-batch", f"train loss jumps by {spread:.2f}: twice the batch, the learning rate "
                            "scaled by its square root", {"train_batch_size": params.train_batch_size * 2,
                                                          "lr": _round(params.lr * math.sqrt(2))}))
    return found


def remedies_text(task, diagnosis, params, trained_steps):
    """Markdown lines for the report: the remedies with their commands, or why there are none."""
    found = remedies(task, diagnosis, params, trained_steps)
    if not found:
        return ["Nothing to fix: the curves are healthy. To tune what is sound: `finetune search`."]
    lines = [f"- **{remedy.name}**: {remedy.why} (`{remedy.command()}`)" for remedy in found]
    return [*lines, "", "Each over three seeds, against this run's params over the same seeds: "
            "`finetune remedies --run`."]


def _learnt(task, diagnosis, validation):
    if task.regression:
        return (f"{validation} loss never got far below the mean's ({diagnosis[f'min_{validation}_loss']:.3f} against "
                f"{diagnosis['mean_baseline_loss']:.3f})")
    shown, _ = metric_words(task)
    best = diagnosis[f"best_{validation}_{task.diagnosis_metric}"]
    baseline = diagnosis["majority_baseline"]
    return f"{validation} {shown} never got far above the majority's ({best:.3f} against {baseline:.3f})"


def _round(value):
    """A learning rate to three significant digits, as a person would type it."""
    return float(f"{value:.3g}")


def _shown(value):
    return str(value).lower() if isinstance(value, bool) else str(value)
