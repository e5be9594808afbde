"""A multi-label head that starts from train's label frequencies (param-free: every multi-label run).

A fresh head predicts 0.5 for every label, while most labels are absent from most texts (on
GoEmotions 28 labels, 1.2 a text). Binary cross-entropy then pulls every output down at once, and
on all-MiniLM-L6-v2 the encoder followed: within 100 steps its [CLS] state was the same for every
text (its spread across texts fell from 0.20 to 0.01; lr 3e-5 with warm-up did the same), and the
model predicted the label frequencies whatever the text, still at step 800. Setting the output
bias to the log-odds of each label's train frequency (the prior initialisation of Lin et al.,
"Focal Loss for Dense Object Detection", 2017) starts the loss at the frequencies' level, and the
same 300 steps learnt from the text (train loss 0.157 to 0.113, the [CLS] spread 0.58).
With `class_weights` weighting each label's positives by w, the loss's best constant is the
odds w x p / (1 - p) instead (0 for `balanced`, whose w is (1 - p) / p), and the bias starts there.
"""

import numpy as np
import torch

from finetune.core.errors import PipelineError

# A label in no train example (or in every one) gets this frequency, not an infinite bias.
FREQUENCY_FLOOR = 1e-4


def start_from_label_frequencies(model, task, train_labels, positive_weights=None):
    """Set the output bias of `model`'s classifier to each label's train log-odds (times its
    positives' weight, {label: w} of class_weights, if any); returns the frequencies {label: share
    of train examples with it}. `train_labels`: multi-hot rows."""
    frequencies = np.asarray(train_labels, dtype=np.float64).mean(axis=0)
    clipped = frequencies.clip(FREQUENCY_FLOOR, 1 - FREQUENCY_FLOOR)
    weights = np.array([positive_weights[name] for name in task.label_names]) if positive_weights else 1.0
    output = output_layer(model, task.num_labels)
    with torch.no_grad():
        output.bias.copy_(torch.from_numpy(np.log(weights * clipped / (1 - clipped))).to(output.bias.dtype))
    return {name: round(float(share), 6) for name, share in zip(task.label_names, frequencies, strict=True)}


def output_layer(model, num_labels):
    """The classifier's last linear layer: one output per label (BERT's `classifier`, RoBERTa's
    `classifier.out_proj`, ...)."""
    layers = [module for module in model.modules()
              if isinstance(module, torch.nn.Linear) and module.out_features == num_labels and module.bias is not None]
    if not layers:
        raise PipelineError(f"{type(model).__name__}: no linear output layer of {num_labels} outputs with a bias, "
                            "to start a multi-label head from the label frequencies")
    return layers[-1]
