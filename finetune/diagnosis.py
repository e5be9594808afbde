"""Reading the learning curves as the course teaches: a verdict and the numbers behind it.

healthy | overfitting | underfitting | erratic. `diagnose` gives the verdict and its numeric
evidence (what metrics/diagnosis.json holds, so `dvc exp show` can sort by them);
`explanation` and REMEDIES turn them into the sentences of the report. The thresholds are
params (`diagnose_*`, documented in params.yaml).
"""

import json
import statistics

from finetune.paths import PROVENANCE_FILE

REMEDIES = {
    "healthy": "none needed",
    "overfitting": "early stopping (early_stopping_patience), fewer epochs, regularisation (weight_decay), more data",
    "underfitting": "more epochs, a higher learning rate or warm-up, a larger model; check the labels",
    "erratic": "a lower learning rate, a larger batch, warm-up (warmup_ratio)",
}


def diagnose(train_rows, evaluation_rows, majority_baseline, params):
    """The verdict and its evidence, from the logged history of one run."""
    losses = [row["validation_loss"] for row in evaluation_rows]
    min_index = losses.index(min(losses))
    final = evaluation_rows[-1]
    train_losses = [row["train_loss"] for row in train_rows]
    evidence = {
        "majority_baseline": majority_baseline,
        "best_validation_accuracy": max(row["validation_accuracy"] for row in evaluation_rows),
        "final_validation_accuracy": final["validation_accuracy"],
        "final_train_subset_accuracy": final["train_subset_accuracy"],
        "accuracy_gap": final["train_subset_accuracy"] - final["validation_accuracy"],
        "min_validation_loss": losses[min_index],
        "min_validation_loss_step": evaluation_rows[min_index]["step"],
        "validation_loss_rise": (losses[-1] - losses[min_index]) / losses[min_index],
        "evaluations_after_min_loss": len(losses) - 1 - min_index,
        "train_loss_spread": _train_loss_spread(train_losses, params.diagnose_window),
    }
    window = params.diagnose_window
    train_loss_fell = _mean_of_last(train_losses, window) < _mean_of_first(train_losses, window)
    if evidence["best_validation_accuracy"] < majority_baseline + params.diagnose_baseline_margin:
        verdict = "underfitting"
    elif evidence["train_loss_spread"] > params.diagnose_loss_spread:
        verdict = "erratic"
    elif (train_loss_fell and evidence["evaluations_after_min_loss"] >= 2
          and evidence["validation_loss_rise"] > params.diagnose_loss_rise
          and evidence["accuracy_gap"] > params.diagnose_accuracy_gap):
        verdict = "overfitting"
    else:
        verdict = "healthy"
    return {"verdict": verdict, **evidence}


def explanation(diagnosis, params):
    """One sentence: the verdict and the evidence that decided it."""
    verdict, baseline = diagnosis["verdict"], diagnosis["majority_baseline"]
    if verdict == "underfitting":
        reason = (f"validation accuracy never got above {baseline:.3f}, the share of the majority class, by more "
                  f"than {params.diagnose_baseline_margin} (best {diagnosis['best_validation_accuracy']:.3f})")
    elif verdict == "erratic":
        reason = (f"train loss jumps by {diagnosis['train_loss_spread']:.2f} of its starting level within "
                  f"{params.diagnose_window} logs (threshold {params.diagnose_loss_spread})")
    elif verdict == "overfitting":
        reason = (f"validation loss rose {diagnosis['validation_loss_rise']:.0%} over the "
                  f"{diagnosis['evaluations_after_min_loss']} evaluations after its minimum at step "
                  f"{diagnosis['min_validation_loss_step']} while train loss fell, and train accuracy is "
                  f"{diagnosis['accuracy_gap']:.3f} above validation")
    else:
        reason = (f"validation accuracy {diagnosis['final_validation_accuracy']:.3f} is above the majority baseline "
                  f"{baseline:.3f}, validation loss rose {diagnosis['validation_loss_rise']:.0%} from its "
                  f"minimum and the train/validation accuracy gap is {diagnosis['accuracy_gap']:.3f}")
    return f"{verdict}: {reason}"


def _train_loss_spread(train_losses, window):
    """Median over moving windows of the train loss's standard deviation, relative to its
    starting level (the first window's mean): noise measured against what there is to learn."""
    if len(train_losses) < 2 * window:
        return 0.0  # too few logs to tell noise from learning
    start_level = _mean_of_first(train_losses, window)
    spreads = [statistics.stdev(train_losses[index:index + window]) / start_level
               for index in range(len(train_losses) - window + 1)]
    return statistics.median(spreads)


def _mean_of_first(values, count):
    return statistics.fmean(values[:count])


def _mean_of_last(values, count):
    return statistics.fmean(values[-count:])


def majority_baseline(split="validation"):
    """Accuracy of always predicting the most frequent label of `split`."""
    label_counts = json.loads(PROVENANCE_FILE.read_text())["splits"][split]["label_counts"]
    return max(label_counts.values()) / sum(label_counts.values())
