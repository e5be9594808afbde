"""Mean ± std over seeds of every experiment configuration: is one lr really better?

Not a pipeline stage but a command to run after a seed sweep, e.g.
    dvc exp run --queue -S seed=1,2,3 -S lr=3e-5,5e-5 && dvc queue start
    finetune seeds
It reads the runs with `dvc.api.exp_show` (the commit and its experiments), groups them
by all their params except `seed` (and a search's `trial`), and prints one row per group: how
many runs, and the mean ± sample standard deviation of each of the task's validation and test
metrics. It also draws the validation ones as a PNG. Pruned trials are left out, and a seed run
twice in a group counts once.
"""

import argparse
import dataclasses
import math
import re
import statistics

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import dvc.api  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from finetune.core.errors import PipelineError, run_stage  # noqa: E402
from finetune.core.metrics import METRICS  # noqa: E402
from finetune.core.params import HUB_DATASET, NOT_CONFIGURATION, Params  # noqa: E402
from finetune.core.tasks import GLUE_TASKS  # noqa: E402
from finetune.tune.compare import one_run_per_seed  # noqa: E402

METRIC_NAMES = tuple(METRICS)
METRIC_KEY = re.compile(rf"(validation|test)(_\w+?)?_({'|'.join(METRIC_NAMES)})")
GROUPING_PARAMS = tuple(field.name for field in dataclasses.fields(Params) if field.name not in NOT_CONFIGURATION)


@dataclasses.dataclass
class Group:
    params: dict
    runs: list  # the exp_show rows of its runs

    def values(self, metric):
        return [run[metric] for run in self.runs]

    def summary(self, metric):
        values = self.values(metric)
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        return statistics.fmean(values), spread


def metric_columns(rows):
    """The task metrics of evaluation.json that the rows hold: validation splits first, then test."""
    keys = {key for row in rows for key in row if METRIC_KEY.fullmatch(key)}

    def order(key):
        split, _, metric = METRIC_KEY.fullmatch(key).groups()
        return split != "validation", key.removesuffix(metric), METRIC_NAMES.index(metric)
    return sorted(keys, key=order)


def ranking_metric(metrics, params):
    """The validation metric groups are ranked by: the task's main one (a GLUE task's own, else the
    first of finetune/core/metrics.py's table that the runs report, as for your own data)."""
    validation = [metric for metric in metrics if metric.startswith("validation")]
    if params.get("dataset") == HUB_DATASET and params.get("dataset_config") in GLUE_TASKS:
        main = GLUE_TASKS[params["dataset_config"]].main_metric
        return next(metric for metric in validation if METRIC_KEY.fullmatch(metric).group(3) == main)
    return min(validation, key=lambda key: METRIC_NAMES.index(METRIC_KEY.fullmatch(key).group(3)))


def group_by_params(rows):
    """Finished runs (not the workspace copy of HEAD, nor pruned trials) grouped by every param but
    `seed` and `trial`, one run per seed."""
    groups = {}
    metrics = metric_columns(rows)
    for row in rows:
        if row.get("rev") == "workspace" or row.get("State") not in (None, "Success") or _pruned(row):
            continue
        if any(row.get(metric) is None for metric in metrics):
            continue
        params = {name: row.get(name) for name in GROUPING_PARAMS}
        key = repr(sorted(params.items()))  # text_columns is a list: unhashable
        groups.setdefault(key, Group(params, [])).runs.append(row)
    for group in groups.values():
        group.runs = one_run_per_seed(group.runs, lambda row: row["seed"], lambda row: row.get("trial"))
    return list(groups.values())


def _pruned(row):
    """A search trial the pruner stopped (metrics/train.json's `trial_state`, a column of its own
    name unless another file has one too)."""
    return any(value == "pruned" for key, value in row.items() if key.rpartition(":")[2] == "trial_state")


def varying_params(groups):
    """The params that tell the groups apart (all others are equal in every group)."""
    return [name for name in GROUPING_PARAMS if len({str(group.params[name]) for group in groups}) > 1]


def format_table(groups):
    columns = varying_params(groups)
    metrics = metric_columns([run for group in groups for run in group.runs])
    header = [*columns, "runs", "seeds", *metrics]
    lines = []
    ranked_by = ranking_metric(metrics, groups[0].params)
    for group in sorted(groups, key=lambda group: -group.summary(ranked_by)[0]):
        seeds = ",".join(str(seed) for seed in sorted(int(run["seed"]) for run in group.runs))
        cells = [_format_value(group.params[name]) for name in columns] + [str(len(group.runs)), seeds]
        cells += [_format_summary(*group.summary(metric)) for metric in metrics]
        lines.append(cells)
    widths = [max(len(row[index]) for row in [header, *lines]) for index in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in [header, ["-" * width for width in widths], *lines])


def plot_groups(groups, path):
    columns = varying_params(groups)
    labels = [", ".join(f"{name}={_format_value(group.params[name])}" for name in columns) or "all runs"
              for group in groups]
    metrics = [metric for metric in metric_columns([run for group in groups for run in group.runs])
               if metric.startswith("validation")][:2]
    figure, axis = plt.subplots(figsize=(max(5, 1.6 * len(groups)), 4))
    for offset, metric, color in zip((-0.1, 0.1), metrics, ("tab:blue", "tab:orange"), strict=False):
        for position, group in enumerate(groups):
            mean, spread = group.summary(metric)
            axis.errorbar(position + offset, mean, yerr=0 if math.isnan(spread) else spread, fmt="o", capsize=4,
                          color=color, label=metric if position == 0 else None)
            axis.scatter([position + offset] * len(group.runs), group.values(metric), s=12, alpha=0.4, color="gray")
    axis.set_xticks(range(len(groups)), labels, rotation=20, ha="right")
    axis.set_xlim(-0.5, len(groups) - 0.5)
    axis.set(ylabel="score", title="Validation scores over seeds (mean ± std, dots = runs)")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def _format_summary(mean, spread):
    return f"{mean:.4f}" if math.isnan(spread) else f"{mean:.4f} ± {spread:.4f}"  # one run: no spread


def _format_value(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_arguments(parser):
    parser.add_argument("--rev", action="append", help="Git revision whose experiments to read (default: HEAD)")
    parser.add_argument("--num", type=int, default=1, help="also read the N-1 commits before it (-1: all)")
    parser.add_argument("--plot", default="seeds.png", help="where to write the PNG (default: seeds.png)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args(argv))


def run(args):

    groups = group_by_params(dvc.api.exp_show(revs=args.rev, num=args.num))
    if not groups:
        raise PipelineError("no finished runs with metrics: run `dvc repro` or `dvc exp run` first")
    print(format_table(groups))
    plot_groups(groups, args.plot)
    print(f"aggregate_seeds: {sum(len(group.runs) for group in groups)} runs in {len(groups)} groups, plot -> {args.plot}")


if __name__ == "__main__":
    run_stage(main)
