"""Reading the learning curves as the course teaches: a verdict and the numbers behind it.

healthy | overfitting | underfitting | erratic. `diagnose` gives the verdict and its numeric
evidence (what metrics/diagnosis.json holds, so `dvc exp show` can sort by them);
`explanation` turns them into the report's sentence, finetune/reporting/remedies.py into what to
try. The thresholds are params (`diagnose_*`, documented in params.yaml). The curves read are those of the task's
(first) validation split and its diagnosis metric: accuracy, or Pearson's r for a regression,
whose baseline is predicting the train mean (its squared error) instead of the majority class, or
for a multi-label task micro-F1, whose baseline is predicting the most common label set for every
text. (Subset accuracy would call a model that gives rare labels freely, as `class_weights:
balanced` makes it, underfitting: on GoEmotions, at step 1600, its validation subset accuracy
was 0.077 against 0.293 for always `neutral`, while its macro-F1, 0.326, was the unweighted run's.)
"""

import json
import statistics

from finetune.core.paths import PROVENANCE_FILE
from finetune.core.tasks import TRAIN_SUBSET


def diagnose(task, train_rows, evaluation_rows, baseline, params):
    """The verdict and its evidence, from the logged history of one run.

    `baseline`: the majority-class share of validation, or for a regression the squared error
    of predicting the train mean there (see `baselines`)."""
    validation, metric = task.validation_splits[0], task.diagnosis_metric
    losses = [row[f"{validation}_loss"] for row in evaluation_rows]
    min_index = losses.index(min(losses))
    final = evaluation_rows[-1]
    train_losses = [row["train_loss"] for row in train_rows]
    best_score = max(row[f"{validation}_{metric}"] for row in evaluation_rows)
    gap = final[f"{TRAIN_SUBSET}_{metric}"] - final[f"{validation}_{metric}"]
    evidence = {
        "mean_baseline_loss" if task.regression else "majority_baseline": baseline,
        f"best_{validation}_{metric}": best_score,
        f"final_{validation}_{metric}": final[f"{validation}_{metric}"],
        f"final_{TRAIN_SUBSET}_{metric}": final[f"{TRAIN_SUBSET}_{metric}"],
        f"{metric}_gap": gap,
        f"min_{validation}_loss": losses[min_index],
        f"min_{validation}_loss_step": evaluation_rows[min_index]["step"],
        f"{validation}_loss_rise": (losses[-1] - losses[min_index]) / losses[min_index],
        "evaluations_after_min_loss": len(losses) - 1 - min_index,
        "train_loss_spread": _train_loss_spread(train_losses, params.diagnose_window),
    }
    window = params.diagnose_window
    # A run shorter than logging_steps logs no train loss: nothing says it fell.
    train_loss_fell = bool(train_losses) and _mean_of_last(train_losses, window) < _mean_of_first(train_losses, window)
    if task.regression:
        underfitting = losses[min_index] > baseline * (1 - params.diagnose_baseline_margin)
    else:
        underfitting = best_score < baseline + params.diagnose_baseline_margin
    erratic = evidence["train_loss_spread"] > params.diagnose_loss_spread
    validation_loss_rose = evidence[f"{validation}_loss_rise"] > params.diagnose_loss_rise
    train_pulled_ahead = gap > params.diagnose_accuracy_gap
    overfitting = (train_loss_fell and evidence["evaluations_after_min_loss"] >= 2 and validation_loss_rose
                   and train_pulled_ahead)
    # In this order: a model that learnt nothing is not also erratic or overfitting.
    verdict = next(name for name, holds in (("underfitting", underfitting), ("erratic", erratic),
                                             ("overfitting", overfitting), ("healthy", True)) if holds)
    return {"verdict": verdict, **evidence}


def explanation(task, diagnosis, params):
    """One sentence: the verdict and the evidence that decided it."""
    validation, metric = task.validation_splits[0], task.diagnosis_metric
    verdict = diagnosis["verdict"]
    gap, rise = diagnosis[f"{metric}_gap"], diagnosis[f"{validation}_loss_rise"]
    if task.regression:
        baseline = f"the squared error of predicting the train mean ({diagnosis['mean_baseline_loss']:.3f})"
    else:
        baseline = f"the majority baseline {diagnosis['majority_baseline']:.3f}"
    shown, majority = metric_words(task)
    if verdict == "underfitting" and task.regression:
        reason = (f"{validation} loss never got below {baseline} by more than {params.diagnose_baseline_margin:.0%} "
                  f"(best {diagnosis[f'min_{validation}_loss']:.3f})")
    elif verdict == "underfitting":
        reason = (f"{validation} {shown} never got above {diagnosis['majority_baseline']:.3f}, {majority}, "
                  f"by more than {params.diagnose_baseline_margin} (best {diagnosis[f'best_{validation}_{metric}']:.3f})")
    elif verdict == "erratic":
        reason = (f"train loss jumps by {diagnosis['train_loss_spread']:.2f} of its starting level within "
                  f"{params.diagnose_window} logs (threshold {params.diagnose_loss_spread})")
    elif verdict == "overfitting":
        reason = (f"{validation} loss rose {rise:.0%} over the {diagnosis['evaluations_after_min_loss']} evaluations "
                  f"after its minimum at step {diagnosis[f'min_{validation}_loss_step']} while train loss fell, and "
                  f"train {shown} is {gap:.3f} above {validation}")
    elif task.regression:
        reason = (f"{validation} loss {diagnosis[f'min_{validation}_loss']:.3f} got below {baseline}, rose {rise:.0%} "
                  f"from its minimum, and the train/{validation} {metric} gap is {gap:.3f}")
    else:
        reason = (f"{validation} {shown} {diagnosis[f'final_{validation}_{metric}']:.3f} is above {baseline}, "
                  f"{validation} loss rose {rise:.0%} from its minimum and the train/{validation} {shown} gap is "
                  f"{gap:.3f}")
    rows, of = diagnosis.get("curves_validation_rows"), diagnosis.get("validation_rows")
    sample = f" (curves of a stratified sample of {rows:,} of {validation}'s {of:,} rows)" if rows and rows < of else ""
    return f"{verdict}: {reason}{sample}"


def metric_words(task):
    """The diagnosis metric and its majority baseline, as the sentences say them."""
    if task.regression:
        return task.diagnosis_metric, "the squared error of predicting the train mean"
    if task.multi_label:
        return "micro-F1", "the micro-F1 of always predicting the most common label set"
    return "accuracy", "the share of the majority class"


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


def baseline(task):
    """What a model that learnt nothing scores on the (first) validation split: the majority
    class's share (a multi-label task: the micro-F1 of always predicting its most common label
    set), or for a regression the squared error of always predicting the train mean."""
    splits = json.loads(PROVENANCE_FILE.read_text())["splits"]
    validation = splits[task.validation_splits[0]]
    if task.regression:
        return validation["label_variance"] + (validation["label_mean"] - splits["train"]["label_mean"]) ** 2
    if task.multi_label:  # the micro-F1 of giving every text the most common set
        given, counts = set(validation["most_common_label_set"]["labels"]), validation["label_counts"]
        true_positives = sum(counts[label] for label in given)
        false_positives = sum(validation["rows"] - counts[label] for label in given)
        false_negatives = sum(count for label, count in counts.items() if label not in given)
        denominator = 2 * true_positives + false_positives + false_negatives
        return 2 * true_positives / denominator if denominator else 0.0
    counts = validation["label_counts"]
    return max(counts.values()) / sum(counts.values())
