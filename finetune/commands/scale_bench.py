"""`finetune bench --scale`: how each stage's cost grows with the data, on generated pairs.

For each row count it writes a data set of question pairs in QQP's shape (two questions of 6 to 18
words of the checkpoint's vocabulary, ~30 tokens a pair as QQP's, 37% duplicates; a duplicate is its
question reworded, so a model can learn it) as your own csv files,
train of that many rows and validation and test of a tenth each, then runs the stages on it in a
fresh project folder, each in its own process, and prints each stage's wall time, rows/s and peak
memory: the anonymous memory of the process and of the processes it starts (a page they share
counted once), sampled every 0.2 s, and the largest resident set of any one of them, which also
counts the pages of memory-mapped Arrow files read (the kernel drops those as needed):

    finetune bench --scale 10000 100000 1000000
    finetune bench --scale 363846 --validation-rows 40430 --test-rows 390965 \\
        --stages download tokenize train evaluate --max-steps 300       # QQP's sizes

Train runs `--max-steps` steps whatever the rows: its cost should not grow with them (its
evaluations score capped samples). Linear growth is the target; docs/measurements.md has the figures.
"""

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from finetune.core.paths import PARAMS_FILE

STAGES = ("download", "tokenize", "train", "evaluate")
DUPLICATE_SHARE = 0.37  # QQP's train split
QUESTION_WORDS = ("what", "how", "why", "which", "who", "where", "when", "can", "is", "do")


def add_arguments(parser):
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=["download", "tokenize"],
                        help="stages to time, in pipeline order (default: download tokenize)")
    parser.add_argument("--max-steps", type=int, default=100, help="train's steps (default 100)")
    parser.add_argument("--validation-rows", type=int, help="validation's rows (default: a tenth of train's)")
    parser.add_argument("--test-rows", type=int, help="test's rows (default: a tenth of train's)")
    parser.add_argument("--keep", type=Path, help="keep the generated projects in this folder")


def generate_pairs(folder, rows, words, validation_rows=None, test_rows=None, seed=0):
    """train.csv (`rows` rows), validation.csv and test.csv (a tenth of train each, at least 100, unless
    given) in `folder`, of `words`: whole words of the tokenizer's vocabulary (one token each)."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(seed)
    vocabulary = np.array(sorted(words))
    tenth = max(100, rows // 10)
    for split, count in (("train", rows), ("validation", validation_rows or tenth), ("test", test_rows or tenth)):
        with open(folder / f"{split}.csv", "w", newline="") as split_file:
            writer = csv.writer(split_file)
            writer.writerow(["question1", "question2", "is_duplicate"])
            for start in range(0, count, 50_000):
                writer.writerows(_pairs(generator, vocabulary, min(50_000, count - start)))


def _pairs(generator, vocabulary, count):
    lengths = generator.integers(6, 19, size=(count, 2))
    duplicate = generator.random(count) < DUPLICATE_SHARE
    for (first_length, second_length), is_duplicate in zip(lengths.tolist(), duplicate.tolist(), strict=True):
        first = generator.choice(vocabulary, size=first_length)
        if is_duplicate:  # the same words, two swapped and one replaced
            second = first.copy()
            second[[0, -1]] = second[[-1, 0]]
            second[generator.integers(first_length)] = generator.choice(vocabulary)
        else:
            second = generator.choice(vocabulary, size=second_length)
        yield [_question(generator, first), _question(generator, second), int(is_duplicate)]


def _question(generator, words):
    return f"{QUESTION_WORDS[generator.integers(len(QUESTION_WORDS))]} {' '.join(words)}?"


def timed_stage(stage, project):
    """(seconds, peak anonymous MB, peak resident MB) of `python -m stages.<stage>` in `project`."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=project,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    peak_anonymous = 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        peak_anonymous = max(peak_anonymous, _anonymous_kb(process.pid))
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"bench: stage {stage} failed in {project}")
    return seconds, peak_anonymous / 1024, usage.ru_maxrss / 1024  # Linux reports kB


def _anonymous_kb(pid):
    """The anonymous memory of the process and of the processes it started (tokenize's parts), each
    page shared after a fork counted once (a share to each process: Pss_Anon)."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                    for child in (task / "children").read_text().split()]
    except OSError:  # the process has just ended
        return 0
    own = next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss_Anon:")), 0)
    return own + sum(_anonymous_kb(child) for child in children)


def run(arguments):
    from finetune.models import load_tokenizer

    params = yaml.safe_load(PARAMS_FILE.read_text())
    words = [word for word in load_tokenizer(params["checkpoint"]).get_vocab()
             if word.isascii() and word.isalpha() and word.islower() and len(word) >= 3]
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        root = arguments.keep or Path(scratch)
        print(f"{'rows':>9} {'stage':<9} {'wall s':>8} {'rows/s':>9} {'own MB':>7} {'RSS MB':>7}")
        for rows in arguments.scale:
            project = root / f"rows-{rows}"
            generate_pairs(project / "pairs", rows, words, arguments.validation_rows, arguments.test_rows)
            project_params = {**params, "dataset": "pairs", "text_columns": ["question1", "question2"],
                              "label_column": "is_duplicate", "max_steps": arguments.max_steps}
            (project / "params.yaml").write_text(yaml.safe_dump(project_params, sort_keys=False))
            for stage in (stage for stage in STAGES if stage in arguments.stages):
                seconds, anonymous, resident = timed_stage(stage, project)
                stage_rows = _stage_rows(project, stage, rows, arguments.max_steps, params["train_batch_size"])
                print(f"{rows:>9,} {stage:<9} {seconds:>8.1f} {stage_rows / seconds:>9,.0f} {anonymous:>7,.0f} "
                      f"{resident:>7,.0f}", flush=True)


def _stage_rows(project, stage, rows, max_steps, batch_size):
    """The rows a stage works through: every split's (download, tokenize), validation and test's
    (evaluate), the pairs trained (train)."""
    splits = json.loads((project / "data" / "raw" / "provenance.json").read_text())["splits"]
    if stage == "train":
        return max_steps * batch_size
    if stage == "evaluate":
        return sum(info["rows"] for split, info in splits.items() if split != "train")
    return sum(info["rows"] for info in splits.values())
