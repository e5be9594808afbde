"""`finetune`: the project's commands that are not pipeline stages, as one console script.

  finetune remedies        what a run's learning curves call for; --run tries each over seeds
  finetune search          an Optuna study over params.yaml, every trial a DVC experiment
  finetune pick            rank runs with their seed noise in view; --promote a winner beyond noise
  finetune study-report    a study's trials and Optuna's views (PNGs), from its storage
  finetune seeds           mean ± std over seeds of a commit's experiments
  finetune predict         the published model on new rows (a file or folder) to a CSV; metrics where labelled
  finetune bench           training speed against the course's plain loop; --scale: each stage at 10k-1M rows;
                           --inference: rows/s of torch, ONNX and int8
  finetune plots-template  the offline page of `dvc plots show`

Each takes --help. The work lives in the package (finetune/tune/, finetune/commands/); this
module only parses.
"""

import argparse
import os
import re
import sys
from pathlib import Path

from finetune.core.errors import PipelineError, run_stage

TIMEOUT = re.compile(r"(\d+(?:\.\d+)?)([smh]?)")


def main(argv=None):
    # A line as soon as it is printed, also into a log file: the commands report progress by lines.
    sys.stdout.reconfigure(line_buffering=True)
    # The dvc it runs, and the python of the stages that dvc runs, are this environment's, also when
    # the environment is not activated (a console script called by its path, or python -m).
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    parser = argparse.ArgumentParser(prog="finetune", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (summary, add_arguments, command) in _commands().items():
        subparser = commands.add_parser(name, help=summary, description=summary)
        add_arguments(subparser)
        subparser.set_defaults(command_function=command)
    arguments = parser.parse_args(argv)
    run_stage(lambda: arguments.command_function(arguments))


def _commands():
    from finetune.commands import aggregate_seeds, benchmark, plots_template

    return {
        "remedies": ("What a run's learning curves call for; with --run, each tried over seeds as DVC experiments",
                     _remedies_arguments, _remedies),
        "search": ("An Optuna study over params.yaml keys, every trial a DVC experiment <study>-<number>",
                   _search_arguments, _search),
        "pick": ("Rank runs by the main validation metric over seeds; compare the best with the baseline by a paired "
                 "bootstrap; --promote a winner beyond noise", _pick_arguments, _pick),
        "study-report": ("A study's report: its trials, optimisation history, param importances, parallel "
                         "coordinates (PNGs)", _report_arguments, _study_report),
        "seeds": ("Mean ± std over seeds of every configuration among a commit's experiments",
                  aggregate_seeds.add_arguments, aggregate_seeds.run),
        "predict": ("The published model's predictions of every row of a file or folder (csv, tsv, json, jsonl, "
                    "parquet), in its order, to a CSV; with labels, the metrics and their intervals",
                    _predict_arguments, _predict),
        "bench": ("Training speed of the train stage against the course's plain loop", benchmark.add_arguments,
                  benchmark.run),
        "plots-template": ("The offline page of `dvc plots show`, vega bundles inlined", plots_template.add_arguments,
                           plots_template.run),
    }


def _remedies_arguments(parser):
    parser.add_argument("--exp", help="the experiment (of this commit) whose curves to read (default: the workspace's run)")
    parser.add_argument("--run", action="store_true", help="run every remedy, and the run's own params, over --seeds")
    parser.add_argument("--seeds", type=_positive, default=3, help="seeds per remedy (default 3)")
    parser.add_argument("--jobs", type=_positive, default=1, help="experiments at once (default 1)")
    parser.add_argument("--only", nargs="+", default=(), metavar="REMEDY", help="run only these remedies")


def _remedies(arguments):
    from finetune.tune.remedy_runs import run_remedies

    run_remedies(arguments.exp, arguments.run, arguments.seeds, arguments.jobs, arguments.only)


def _storage_arguments(parser):
    parser.add_argument("--study", required=True, help="the study's name (letters, digits, '-', '_', '.')")
    parser.add_argument("--storage", help="Optuna storage URL, e.g. postgresql://user@host/db for workers on several "
                        "machines (default: sqlite:///tuning/studies.db)")


def _search_arguments(parser):
    _storage_arguments(parser)
    parser.add_argument("--space", type=Path, default=Path("search.yaml"),
                        help="the search space file (default search.yaml)")
    parser.add_argument("--trials", type=int, help="finished trials the study should have, all workers together "
                        "(a trial that failed for good counts too)")
    parser.add_argument("--timeout", type=_duration, help="start no trial after this long: seconds, or 90m, 1h")
    parser.add_argument("--jobs", type=_positive, default=1, help="trials at once on this machine: one GPU each, or "
                        "on a CPU each its share of the cores")
    parser.add_argument("--pruner", choices=("median", "none"), default="median", help="Optuna's pruner (default median)")
    parser.add_argument("--startup-trials", type=int, default=3, help="trials before the median pruner prunes (3)")
    parser.add_argument("--warmup-examples", type=int, default=0,
                        help="training examples a trial sees before it can be pruned (0); the pruner compares "
                             "trials at equal examples seen, whatever their batch size")
    parser.add_argument("--push", metavar="REMOTE", help="dvc exp push each trial to this Git remote (and DVC's)")
    parser.add_argument("--seed", type=int, help="the TPE sampler's seed, offset by the trials the study has, so that a "
                        "restart goes on rather than repeating its draws (default: fresh for every worker and restart)")
    parser.add_argument("--heartbeat", type=_positive, default=10,
                        help="seconds between a running trial's heartbeats; silent for three: retried (default 10)")
    parser.add_argument("--retries", type=_not_negative, default=2,
                        help="times a failed trial runs again with its params, then it counts as failed (default 2; "
                             "a new study keeps it)")


def _search(arguments):
    from finetune.tune.search import Search, default_storage_url, run_search
    from finetune.tune.study_report import write_study_report

    if arguments.trials is None and arguments.timeout is None:
        raise PipelineError("search: give a budget: --trials N (finished trials) and/or --timeout (wall time)")
    if arguments.trials is not None and arguments.trials <= 0:
        raise PipelineError(f"search: --trials must be > 0, got {arguments.trials}")
    _check_study_name(arguments.study)
    pruner = ({"name": "none"} if arguments.pruner == "none" else
              {"name": "median", "n_startup_trials": arguments.startup_trials, "n_warmup_steps": arguments.warmup_examples})
    search = Search(arguments.study, arguments.space, arguments.trials, arguments.timeout,
                    arguments.storage or default_storage_url(), arguments.jobs, pruner, arguments.push, arguments.seed,
                    arguments.heartbeat, arguments.retries)
    try:
        study = run_search(search)
    except KeyboardInterrupt:
        print("search: interrupted: the running trials were stopped; the same command goes on where it stopped")
        sys.exit(130)
    folder = Path("tuning") / arguments.study
    drawn = write_study_report(study, folder)
    print(f"search: report -> {folder}/report.md ({', '.join(drawn) or 'no figure yet'})")


def _report_arguments(parser):
    _storage_arguments(parser)


def _study_report(arguments):
    import optuna

    from finetune.training.pruning import open_storage
    from finetune.tune.search import default_storage_url
    from finetune.tune.study_report import write_study_report

    storage = open_storage(arguments.storage or default_storage_url())
    try:
        study = optuna.load_study(study_name=arguments.study, storage=storage)
    except KeyError:
        raise PipelineError(f"no study {arguments.study!r} in that storage") from None
    folder = Path("tuning") / arguments.study
    write_study_report(study, folder)
    print(f"study-report: {folder}/report.md")


def _predict_arguments(parser):
    parser.add_argument("input", type=Path, help="a csv, tsv, json, jsonl or parquet file, or a folder of them")
    parser.add_argument("--output", "-o", type=Path, help="the CSV written (default: <input name>.predictions.csv here)")
    parser.add_argument("--engine", choices=("torch", "onnx", "int8"), default="torch",
                        help="torch (models/), or the export stage's onnx or int8 (exported/); default torch")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--rev", help="the model of this Git revision or experiment (default: the workspace's)")
    source.add_argument("--artifact", help="the model of this registry version of text-classifier, '#STAGE' for a "
                        "stage's, 'latest' for the newest")
    parser.add_argument("--batch-size", type=_positive, help="rows per batch (default: params.yaml's eval_batch_size)")
    parser.add_argument("--id-column", default="idx", help="the input's column that names each row, copied to the "
                        "output (default idx; without it, the row number)")
    parser.add_argument("--label-column", default="label",
                        help="the input's label column: where present, the metrics are printed (default label)")
    parser.add_argument("--threshold", type=float, help="a multi-label model's threshold (default: its run's)")


def _predict(arguments):
    from types import SimpleNamespace

    from finetune.core.params import load_params
    from finetune.serving.model_source import model_folders
    from finetune.serving.predict import predict

    params = load_params()
    output = arguments.output or Path(f"{arguments.input.name.split('.')[0]}.predictions.csv")
    options = SimpleNamespace(batch_size=arguments.batch_size or params.eval_batch_size, precision=params.precision,
                              label_column=arguments.label_column, id_column=arguments.id_column,
                              threshold=arguments.threshold, bootstrap_resamples=params.bootstrap_resamples,
                              bootstrap_seed=params.bootstrap_seed)
    with model_folders(arguments.rev, arguments.artifact, arguments.engine) as (model_folder, exported_folder):
        predict(arguments.input, output, arguments.engine, model_folder, exported_folder, options)


def _pick_arguments(parser):
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--study", help="the complete trials of this study (and plain runs of their params)")
    chosen.add_argument("--exps", nargs="+", metavar="NAME", help="these experiments of the commit (pruned trials skipped)")
    chosen.add_argument("--rev", help="every finished experiment of this commit (default: HEAD's)")
    parser.add_argument("--baseline", metavar="NAME", help="an experiment to compare with (default: the commit's run)")
    parser.add_argument("--promote", action="store_true", help="re-run winner and baseline on --seeds fresh seeds, "
                        "compare on --confirm-on, then apply, commit and tag the winner if it still wins beyond noise")
    parser.add_argument("--seeds", type=_positive, default=3, help="fresh seeds a side for --promote, 2 or more (3)")
    parser.add_argument("--confirm-on", choices=("test", "validation"), default="test",
                        help="with --promote: the split to confirm on: test (default; it chose nothing), or "
                             "validation, whose examples chose the winner (biased upward)")
    parser.add_argument("--jobs", type=_positive, default=1, help="experiments at once (default 1)")
    parser.add_argument("--branch", help="with --promote: commit on this new branch instead of the current one")
    parser.add_argument("--push", metavar="REMOTE",
                        help="with --promote: push the outputs (dvc push), then the commit and tag")


def _pick(arguments):
    from finetune.tune.pick import REPORT, baseline_runs, candidate_runs, pick, promote, table

    if arguments.promote and arguments.seeds < 2:
        raise PipelineError(f"pick --promote: --seeds {arguments.seeds}: give 2 or more: with one run a side a "
                            "comparison measures example noise only, and a lucky seed passes it")
    chosen = pick(candidate_runs(arguments.study, arguments.exps or (), arguments.rev), baseline_runs(arguments.baseline))
    if not chosen.groups:
        raise PipelineError("pick: no run to rank besides the baseline's configuration")
    report = ["# Pick", "", *table(chosen), "", f"Best against the baseline: {chosen.comparison.sentence()}."]
    print("\n".join(report[2:-2]))
    print(f"pick: best against the baseline: {chosen.comparison.sentence()}")
    if arguments.promote:
        final, confirmed, tag = promote(chosen, arguments.seeds, arguments.jobs, arguments.branch, arguments.push,
                                        arguments.confirm_on)
        report += ["", f"## Confirmation (--promote): {confirmed}", "", *table(final), "",
                   f"{final.comparison.sentence()}: " + (f"promoted, tagged `{tag}`." if tag else "nothing promoted.")]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(report) + "\n")


def _check_study_name(name):
    from finetune.core.params import TRIAL

    if not TRIAL.fullmatch(f"{name}/0"):
        raise PipelineError(f"search: --study {name!r}: use letters, digits, '-', '_' and '.', starting with a letter "
                            "or digit")


def _positive(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _not_negative(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _duration(text):
    match = TIMEOUT.fullmatch(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"a wall time > 0 in seconds, or like 90m or 1h, got {text!r}")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


if __name__ == "__main__":
    main(sys.argv[1:])
