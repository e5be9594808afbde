"""How far an exported model's predictions are from PyTorch's: the task's metrics of each engine on
the same rows, the share of rows each predicts as the reference does, and the largest difference of
a probability (of a regression's score)."""

import numpy as np

from finetune.scoring.scores import predictions_of, probabilities_of, task_metrics

# The int8 model may lose this much of the main metric (0.01: one point) before the export
# stage warns: about MRPC's seed noise (finetune pick's seed spread).
TOLERATED_LOSS = 0.01


def compare_engines(task, logits, labels, threshold, reference):
    """{engine: {metric: value, agreement, max_probability_difference}} from {engine: logits} of the same
    rows; `reference` names the engine the others are compared with."""
    scores = {}
    expected = logits[reference]
    for name, engine_logits in logits.items():
        predicted = predictions_of(task, engine_logits, threshold)
        scores[name] = {metric: float(value) for metric, value in task_metrics(task, predicted, labels).items()}
        if name == reference:
            continue
        if task.regression:
            scores[name]["max_prediction_difference"] = float(np.abs(engine_logits - expected).max())
            continue
        same = predicted == predictions_of(task, expected, threshold)
        scores[name]["agreement"] = float((same.all(axis=1) if task.multi_label else same).mean())
        difference = np.abs(probabilities_of(task, engine_logits) - probabilities_of(task, expected))
        scores[name]["max_probability_difference"] = float(difference.max())
    return scores


def metric_loss(task, scores, engine, reference):
    """How much of the task's main metric `engine` loses against `reference` (negative: gains)."""
    return scores[reference][task.main_metric] - scores[engine][task.main_metric]
