"""What the pipeline's stages (stages/*.py, named in dvc.yaml) share, written once.

params       the typed, validated view of params.yaml      paths     where stages read and write
errors       PipelineError and the stage entry point        outputs   atomic files and folders
data         loading and checking GLUE data                 models    checkpoints and precision
scores       accuracy/F1, compute_metrics, bootstrap        glue_metric  the metric as an `evaluate` module
training     TrainingArguments and the Trainer wiring       resume    resumable checkpoints, batch order
history      train and evaluation histories                 diagnosis the verdict from the curves
live         the histories and DVCLive's summary, live      model_card  the card of models/
cpu_speedups the CPU speed-ups, one switchable layer

Commands that are not stages: `python -m finetune.aggregate_seeds` (mean ± std over seeds),
`python -m finetune.benchmark` (training speed against the course's loop) and
`python -m finetune.plots_template` (the offline page of `dvc plots show`).
"""
