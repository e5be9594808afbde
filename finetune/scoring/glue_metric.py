"""The pipeline's metrics as an `evaluate` module: GLUE's metrics of each task, and those of a
user's own data (finetune/core/metrics.py says which).

`evaluate.load("glue", "mrpc")` fetches its script from the Hub; this file is kept in the
project so it loads offline:
    evaluate.load("finetune/scoring/glue_metric.py", config_name="mrpc", metrics=("accuracy", "f1"), num_labels=2)
The arithmetic is finetune/core/metrics.py's, shared with the bootstrap.
"""

import datasets
import evaluate

from finetune.core.metrics import METRICS, metric_values


class GlueMetric(evaluate.Metric):
    def __init__(self, metrics=("accuracy",), num_labels=2, multi_label=False, **kwargs):
        self.metrics, self.num_labels, self.multi_label = tuple(metrics), num_labels, multi_label
        super().__init__(**kwargs)

    def _info(self):
        value = datasets.Value("float32" if any(METRICS[metric].regression for metric in self.metrics) else "int64")
        if self.multi_label:  # a 0/1 per label
            value = datasets.Sequence(value)
        return evaluate.MetricInfo(
            description=f"GLUE's metrics ({', '.join(metric.title for metric in METRICS.values())}) for one task.",
            citation="Wang et al., GLUE: A Multi-Task Benchmark and Analysis Platform for NLU, ICLR 2019.",
            inputs_description="predictions and references: class indices, scores for a regression, or a 0/1 "
                               "list per example (one per label) for a multi-label task.",
            features=datasets.Features({"predictions": value, "references": value}),
        )

    def _compute(self, predictions, references):
        values = metric_values(self.metrics, predictions, references, self.num_labels, self.multi_label)
        return {metric: float(value) for metric, value in values.items()}
