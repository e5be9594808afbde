"""GLUE MRPC metric (accuracy and F1 of the "equivalent" class) as an `evaluate` module.

`evaluate.load("glue", "mrpc")` fetches its script from the Hub; this file is the same
metric kept in the project so it loads offline: `evaluate.load("finetune/glue_metric.py")`.
The arithmetic is `finetune.scores.accuracy_and_f1`, shared with the bootstrap.
"""

import datasets
import evaluate

from finetune.scores import accuracy_and_f1


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
        accuracy, f1 = accuracy_and_f1(predictions, references)
        return {"accuracy": float(accuracy), "f1": float(f1)}
