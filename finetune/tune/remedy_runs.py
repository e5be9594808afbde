"""`finetune remedies`: what the curves of a run call for, and with --run, whether it worked.

The remedies of the run's verdict (finetune/reporting/remedies.py) are printed with the commands
that try them. With --run, each runs over N seeds as DVC experiments (`remedy-<name>-seed<seed>`),
the run's own params over the same seeds too (`remedy-baseline-seed<seed>`), and the report says
per remedy: the verdicts its runs got, the main validation metric's mean ± std against the
baseline's, and the paired bootstrap interval of the difference (finetune/tune/compare.py).
"""

import dataclasses
from collections import Counter
from pathlib import Path

from finetune.core.errors import PipelineError
from finetune.core.params import configuration, parse_params
from finetune.reporting.diagnosis import explanation
from finetune.reporting.remedies import remedies
from finetune.tune.compare import Group, compare, seeds_for, task_of
from finetune.tune.experiments import WORKSPACE, Run, experiment, head, run_experiments

REPORT = Path("tuning") / "remedies.md"


def source_run(name):
    """The run the remedies are for: the workspace's, or experiment `name` of HEAD."""
    if name is None:
        return Run(None, WORKSPACE)
    run = experiment(name)
    if run is None:
        raise PipelineError(f"no experiment {name!r} of this commit (`dvc exp show` lists them)")
    return run


def run_remedies(name=None, execute=False, seeds=3, jobs=1, only=(), report=REPORT):
    source = source_run(name)
    raw_params, diagnosis, training = source.params, source.diagnosis, source.training
    if not diagnosis or not training:
        raise PipelineError(f"{source.label} has no metrics/diagnosis.json or metrics/train.json: run `dvc repro` first")
    params = parse_params(raw_params)
    task = task_of(raw_params)
    found = remedies(task, diagnosis, params, training["trained_steps"])
    unknown = sorted(set(only) - {remedy.name for remedy in found})
    if unknown:
        raise PipelineError(f"--only {unknown[0]}: not a remedy of this run (its remedies: "
                            f"{', '.join(remedy.name for remedy in found) or 'none'})")
    print(f"remedies: {source.label}: {explanation(task, diagnosis, params)}")
    if not found:
        print("remedies: nothing to fix. To tune what is sound: finetune search --help")
        return None
    for remedy in found:
        print(f"  {remedy.name}: {remedy.why}\n      {remedy.command()}")
    if not execute:
        print(f"remedies: to run each over {seeds} seeds and compare: finetune remedies --run")
        return None
    found = [remedy for remedy in found if not only or remedy.name in only]

    # The source's own params, written out: the experiments start from HEAD's params.yaml.
    committed = Run(None, head()).params
    own = {key: value for key, value in raw_params.items() if committed.get(key) != value}
    seed_list = seeds_for(seeds, params.seed)
    planned = {f"remedy-baseline-seed{seed}": {**own, "seed": seed} for seed in seed_list[1:]}
    for remedy in found:
        planned.update({f"remedy-{remedy.name}-seed{seed}": {**own, **remedy.changes, "seed": seed}
                        for seed in seed_list})
    runs = run_experiments(planned, jobs, Path("tuning") / "logs")
    baseline = Group(configuration(raw_params), [source, *(runs[f"remedy-baseline-seed{seed}"] for seed in seed_list[1:])])
    rows = [_outcome(task, remedy, Group({}, [runs[f"remedy-{remedy.name}-seed{seed}"] for seed in seed_list]),
                     baseline) for remedy in found]
    text = _report(source, task, diagnosis, params, baseline, rows, seed_list)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    print(text)
    print(f"remedies: report -> {report}")
    return rows


@dataclasses.dataclass(frozen=True)
class Outcome:
    remedy: object
    verdicts: dict  # verdict -> count
    summary: tuple  # (mean, std) of the main metric
    comparison: object


def _outcome(task, remedy, group, baseline):
    split, metric = task.validation_splits[0], task.main_metric
    verdicts = dict(Counter(run.diagnosis["verdict"] for run in group.runs))
    return Outcome(remedy, verdicts, group.summary(f"{split}_{metric}"), compare(task, group, baseline, split, metric))


def _report(source, task, diagnosis, params, baseline, rows, seeds):
    split, metric = task.validation_splits[0], task.main_metric
    key = f"{split}_{metric}"
    base_mean, base_std = baseline.summary(key)
    lines = ["# Remedies", "", f"For {source.label}: {explanation(task, diagnosis, params)}.", "",
             f"Each remedy over seeds {', '.join(map(str, seeds))}, against the run's own params over the same seeds "
             f"({key} {base_mean:.4f} ± {base_std:.4f}; verdicts "
             f"{_verdicts(Counter(run.diagnosis['verdict'] for run in baseline.runs))}). The difference is the "
             f"remedy's mean minus the baseline's, with its 95% paired bootstrap interval over the {split} examples "
             "and the seeds.", "",
             f"| remedy | changes | verdicts | {key} | difference [95% interval] | beyond noise |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        changes = ", ".join(f"`{name}={value}`" for name, value in row.remedy.changes.items())
        comparison = row.comparison
        lines.append(f"| {row.remedy.name} | {changes} | {_verdicts(row.verdicts)} | {row.summary[0]:.4f} ± "
                     f"{row.summary[1]:.4f} | {comparison.difference:+.4f} [{comparison.low:+.4f}, "
                     f"{comparison.high:+.4f}] | {'yes' if comparison.beyond_noise else 'no'} |")
    healthy = [row.remedy.name for row in rows if row.verdicts == {"healthy": len(seeds)}]
    lines += ["", f"Healthy on every seed: {', '.join(healthy) if healthy else 'none'}. Better beyond noise: "
              f"{', '.join(row.remedy.name for row in rows if row.comparison.beyond_noise) or 'none'}."]
    return "\n".join(lines) + "\n"


def _verdicts(counts):
    return ", ".join(f"{verdict} x{count}" for verdict, count in sorted(counts.items()))
