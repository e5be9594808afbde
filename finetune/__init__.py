"""What the pipeline's stages (stages/*.py, named in dvc.yaml) share, written once.

params       the typed, validated view of params.yaml      paths     where stages read and write
errors       PipelineError and the stage entry point        outputs   atomic files and folders
data         loading and checking GLUE data                 models    checkpoints and precision
scores       accuracy/F1, compute_metrics, bootstrap        glue_metric  the metric as an `evaluate` module
training     TrainingArguments and the Trainer wiring       resume    resumable checkpoints, batch order
history      train and evaluation histories                 diagnosis the verdict from the curves
cpu_speedups the CPU speed-ups, one switchable layer  model_card the card of models/ (Hugging Face format)

Commands that are not stages: `python -m finetune.aggregate_seeds` (mean ± std over seeds)
and `python -m finetune.benchmark` (training speed against the course's loop).
"""
