"""GLUE MRPC metric (accuracy and F1 of the "equivalent" class) as an `evaluate` module.

`evaluate.load("glue", "mrpc")` fetches its script from the Hub; this file is the same
metric kept in the project so it loads offline: `evaluate.load("stages/mrpc_metric.py")`.
"""

import datasets
import evaluate
import numpy as np


class MrpcMetric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Accuracy and binary F1 (positive class 1, 'equivalent') as GLUE reports for MRPC.",
            citation="Wang et al., GLUE: A Multi-Task Benchmark and Analysis Platform for NLU, ICLR 2019.",
            inputs_description="predictions and references: lists of 0/1 labels of equal length.",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions)
        references = np.asarray(references)
        true_positives = int(np.sum((predictions == 1) & (references == 1)))
        false_positives = int(np.sum((predictions == 1) & (references == 0)))
        false_negatives = int(np.sum((predictions == 0) & (references == 1)))
        # sklearn's convention: F1 is 0.0, not NaN, when there is no positive at all.
        f1_denominator = 2 * true_positives + false_positives + false_negatives
        f1 = 2 * true_positives / f1_denominator if f1_denominator else 0.0
        return {"accuracy": float(np.mean(predictions == references)), "f1": float(f1)}
