"""Class weights in the training loss (param `class_weights`), for data where one class dominates.

A model trained on 95% of one class learns to predict it, and its accuracy says 95%. Weighting
each class's cross-entropy (`balanced`: n / (classes x count), scikit-learn's rule, so that every
class weighs as much in all) makes the rare class count. Trainer takes the weighted loss through
its public `compute_loss_func`; evaluation losses stay the plain cross-entropy, comparable
between runs with and without weights (finetune/scoring/scores.py).
"""

import numpy as np
import torch

from finetune.core.errors import PipelineError


def resolved_class_weights(class_weights, task, train_labels):
    """{label name: weight} in the task's label order, or None (`none`). `train_labels`: class
    indices of the train split (a multi-label task's multi-hot rows), which `balanced` counts."""
    if class_weights == "none":
        return None
    if task.regression:
        raise PipelineError(f"params.yaml: class_weights must be none for a regression task ({task.name} has "
                            f"scores, not classes), got {class_weights!r}")
    if class_weights == "balanced" and task.multi_label:
        # A label no train text has would get an infinite weight: it counts as one.
        positives = np.maximum(np.asarray(train_labels, dtype=np.float64).sum(axis=0), 1)
        return {name: round(float((len(train_labels) - count) / count), 6)
                for name, count in zip(task.label_names, positives, strict=True)}
    if class_weights == "balanced":
        counts = np.bincount(np.asarray(train_labels), minlength=task.num_labels)
        return {name: round(float(len(train_labels) / (task.num_labels * count)), 6)
                for name, count in zip(task.label_names, counts, strict=True)}
    unknown = [label for label in class_weights if label not in task.label_names]
    if unknown:
        raise PipelineError(f"params.yaml: class_weights names {unknown[0]!r}, not a label of {task.name} "
                            f"({', '.join(task.label_names)})")
    missing = [label for label in task.label_names if label not in class_weights]
    if missing:
        raise PipelineError(f"params.yaml: class_weights gives no weight to label {missing[0]!r} "
                            f"(name every label of {task.name}: {', '.join(task.label_names)})")
    return {label: class_weights[label] for label in task.label_names}


def weighted_loss(weights, multi_label=False):
    """Trainer's `compute_loss_func`: the cross-entropy of a batch with each example weighted by its
    class (a mean over the batch's weights, PyTorch's rule), or a multi-label task's binary
    cross-entropy with each label's positives weighted."""
    weight = torch.tensor(list(weights.values()), dtype=torch.float32)

    def compute_loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"].float()
        if multi_label:
            return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float(),
                                                                        pos_weight=weight.to(logits.device))
        return torch.nn.functional.cross_entropy(logits, labels, weight=weight.to(logits.device))
    return compute_loss
