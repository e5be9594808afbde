"""Bad params and bad data files: one line naming the key or the file, row and problem,
exit status 1, and nothing written. Each case runs a stage's entry point (`run_stage`),
as `python -m stages.<stage>` does."""

import re

import pytest
import yaml

from finetune.core.errors import run_stage
from stages import download, tokenize, train
from tests.conftest import SPLIT_ROWS, synthetic_pairs, write_glue_task, write_parquet_layout, write_tsv_layout
from tests.repos import write_params


def run_failing(stage, capsys):
    """Exit status and stderr of a stage that must fail."""
    with pytest.raises(SystemExit) as exit_info:
        run_stage(stage.main)
    return exit_info.value.code, capsys.readouterr().err


def without(key):
    return lambda params: {name: value for name, value in params.items() if name != key}


def changed(**changes):
    return lambda params: {**params, **changes}


# (id, how params.yaml changes, the exact error line after "error: params.yaml: ")
BAD_PARAMS = [
    ("typo", changed(lrr=1e-5),
     "unknown key 'lrr' (known keys: dataset, dataset_config, text_columns, label_column, label_delimiter, "
     "allow_empty_labels, checkpoint, "),
    ("missing", without("seed"), "missing key 'seed'"),
    ("lr-negative", changed(lr=-1), "lr must be > 0, got -1.0"),
    ("lr-zero", changed(lr=0), "lr must be > 0, got 0.0"),
    ("lr-text", changed(lr="fast"), "lr must be a number, got 'fast'"),
    ("lr-infinite", changed(lr=float("inf")), "lr must be a number, got inf"),
    ("epochs-zero", changed(epochs=0), "epochs must be > 0, got 0.0"),
    ("batch-zero", changed(train_batch_size=0), "train_batch_size must be > 0, got 0"),
    ("batch-fraction", changed(train_batch_size=8.5), "train_batch_size must be an integer, got 8.5"),
    ("eval-batch-negative", changed(eval_batch_size=-4), "eval_batch_size must be > 0, got -4"),
    ("max-steps-zero", changed(max_steps=0), "max_steps must be -1 (all epochs) or > 0, got 0"),
    ("dropout-one", changed(dropout=1), "dropout must be in [0, 1), got 1.0"),
    ("warmup-one", changed(warmup_ratio=1.5), "warmup_ratio must be in [0, 1), got 1.5"),
    ("precision", changed(precision="fp8"), "precision must be one of auto, fp32, bf16, fp16, got 'fp8'"),
    ("scheduler", changed(lr_scheduler="exponential"),
     "lr_scheduler must be one of linear, cosine, constant, constant_with_warmup, got 'exponential'"),
    ("best-metric", changed(best_model_metric="precision"),
     "best_model_metric must be one of auto, loss, accuracy, f1, matthews_correlation, pearson, spearmanr, "
     "balanced_accuracy, micro_f1, macro_f1, subset_accuracy, got 'precision'"),
    ("threshold-one", changed(multi_label_threshold=1), "multi_label_threshold must be in (0, 1), got 1.0"),
    ("delimiter-number", changed(label_delimiter=1), "label_delimiter must be a string (\"\": one label per cell), got 1"),
    ("label-columns-one", changed(dataset=".", text_columns=["text"], label_column=["spam"]),
     "label_column must name one column, or two or more distinct 0/1 columns (one per label), got ['spam']"),
    ("delimiter-for-glue", changed(label_delimiter=","),
     "label_delimiter must be \"\" for a GLUE task, whose labels are single classes (label_delimiter is for your "
     "own data), got ','"),
    ("class-weights-word", changed(class_weights="heavy"),
     "class_weights must be none, balanced or {label: weight, ...}, got 'heavy'"),
    ("class-weights-empty", changed(class_weights={}),
     "class_weights must be none, balanced or {label: weight, ...}, got {}"),
    ("class-weights-negative", changed(class_weights={"equivalent": 2, "not_equivalent": -1}),
     "class_weights: the weight of 'not_equivalent' must be a number > 0, got -1"),
    ("class-weights-label-list", changed(class_weights={"equivalent": [2]}),
     "class_weights: the weight of 'equivalent' must be a number > 0, got [2]"),
    ("flag-text", changed(group_by_length="yes"), "group_by_length must be true or false, got 'yes'"),
    ("checkpoint-empty", changed(checkpoint=" "), "checkpoint must be a non-empty string, got ' '"),
    ("eval-steps-zero", changed(eval_steps=0), "eval_steps must be auto or > 0, got 0"),
    ("eval-steps-word", changed(eval_steps="often"), "eval_steps must be auto or a number of steps, got 'often'"),
    ("eval-sample-none", changed(eval_sample_size=0), "eval_sample_size must be > 0, got 0"),
    ("patience-negative", changed(early_stopping_patience=-1), "early_stopping_patience must be >= 0 (0 = off), got -1"),
    ("resamples-few", changed(bootstrap_resamples=10), "bootstrap_resamples must be in [100, 1000000], got 10"),
    ("resamples-many", changed(bootstrap_resamples=10**12),
     "bootstrap_resamples must be in [100, 1000000], got 1000000000000"),
    ("seed-beyond-numpy", changed(seed=2**32), "seed must be in [0, 2**32), got 4294967296"),
    ("seed-negative", changed(seed=-1), "seed must be in [0, 2**32), got -1"),
    ("window-one", changed(diagnose_window=1), "diagnose_window must be >= 2, got 1"),
    ("save-steps-zero", changed(save_steps=0), "save_steps must be auto or > 0, got 0"),
    ("keep-none", changed(keep_checkpoints=0), "keep_checkpoints must be > 0, got 0"),
    ("save-off-evaluations", changed(early_stopping_patience=2, eval_steps=4, save_steps=6),
     "save_steps must be a multiple of eval_steps (4) with early stopping, which keeps the best evaluation's "
     "checkpoint (or auto: at every evaluation), got 6"),
    ("warmup-constant", changed(warmup_ratio=0.1, lr_scheduler="constant"),
     "warmup_ratio must be 0 with lr_scheduler constant, which has no warm-up (use constant_with_warmup), got 0.1"),
    ("fp16-cpu", changed(precision="fp16"),
     "precision fp16 needs a CUDA GPU (use bf16 or fp32 on a CPU), got 'fp16'"),
    # Longer than a file name may be: the file system's error was a traceback (found by test_fuzz_params).
    ("dataset-too-long", changed(dataset="x" * 300),
     f"dataset must be nyu-mll/glue (with a GLUE dataset_config) or a folder of your own data files, got {'x' * 300!r}"),
    ("glue-config-typo", changed(dataset_config="mrcp"),
     "dataset_config 'mrcp' is not a GLUE task (one of cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli)"),
]


@pytest.mark.parametrize(("change", "message"), [case[1:] for case in BAD_PARAMS], ids=[case[0] for case in BAD_PARAMS])
def test_bad_param_stops_before_any_work(project, tiny_params, capsys, change, message):
    (project / "params.yaml").write_text(yaml.safe_dump(change(tiny_params), sort_keys=False))
    status, stderr = run_failing(download, capsys)
    assert status == 1
    assert stderr.count("\n") == 1 and stderr.startswith(f"error: params.yaml: {message}")
    assert list(project.iterdir()) == [project / "params.yaml"]


def test_params_file_that_is_not_yaml_is_named(project, capsys):
    (project / "params.yaml").write_text("lr: [5e-5\n")
    status, stderr = run_failing(download, capsys)
    assert status == 1 and stderr.startswith("error: params.yaml is not valid YAML: ")
    assert stderr.count("\n") == 1


@pytest.mark.parametrize("max_length", [100_000, 3, 0])
def test_max_length_the_tokenizer_cannot_produce_is_named(project, tiny_params, capsys, max_length):
    # The tiny model reads 64 tokens; a pair needs [CLS] a [SEP] b [SEP]: 5 at least.
    download.main()
    write_params(project, tiny_params, max_length=max_length)
    status, stderr = run_failing(tokenize if max_length else download, capsys)
    assert status == 1
    if max_length:
        assert stderr == (f"error: params.yaml: max_length must be in [5, 64] for checkpoint "
                          f"{tiny_params['checkpoint']!r} on mrpc's pairs, got {max_length}\n")
    else:
        assert stderr == "error: params.yaml: max_length must be > 0, got 0\n"
    assert not (project / "data" / "tokenized").exists()


def parquet_files(split, change):
    """Writes the parquet layout with `change` applied to one split's frame."""
    def write(glue_dir):
        frames = {name: synthetic_pairs(rows, seed) for seed, (name, rows) in enumerate(SPLIT_ROWS.items())}
        frames[split] = change(frames[split].copy())
        return write_parquet_layout(glue_dir, frames)
    return write


def set_cell(column, row, value):
    def change(frame):
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame
    return change


def damaged_file(relative_path, damage, layout=write_parquet_layout):
    """Writes a whole layout, then damages one of its files."""
    def write(glue_dir):
        layout(glue_dir)
        path = glue_dir / relative_path
        damage(path)
        return glue_dir
    return write


def truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edited_tsv(edit):
    def damage(path):
        lines = path.read_text().splitlines()
        path.write_text("\n".join(edit(lines)) + "\n")
    return damage


def tsv_cell(row, column, value):
    """Replace one cell of data row `row` (0-based, after the header) of a TSV file."""
    def edit(lines):
        cells = lines[row + 1].split("\t")
        cells[column] = value
        lines[row + 1] = "\t".join(cells)
        return lines
    return edited_tsv(edit)


TRAIN_PARQUET = "train-00000-of-00001.parquet"
VALIDATION_PARQUET = "validation-00000-of-00001.parquet"
TEST_PARQUET = "test-00000-of-00001.parquet"

# (id, how the data folder is written, regular expression of the error line after "error: ")
BAD_DATA = [
    ("label-2", parquet_files("train", set_cell("label", 5, 2)), rf".*/{TRAIN_PARQUET} row 5: label 2 is not one of 0, 1"),
    ("label-negative", parquet_files("validation", set_cell("label", 0, -7)),
     rf".*/{VALIDATION_PARQUET} row 0: label -7 is not one of 0, 1"),
    ("blank-sentence", parquet_files("validation", set_cell("sentence2", 3, "  ")),
     rf".*/{VALIDATION_PARQUET} row 3: sentence2 is empty or not text \('  '\)"),
    ("null-sentence", parquet_files("train", set_cell("sentence1", 7, None)),
     rf".*/{TRAIN_PARQUET} row 7: sentence1 is empty or not text \(None\)"),
    ("numbers-not-text", parquet_files("test", lambda frame: frame.assign(sentence2=range(len(frame)))),
     rf".*/{TEST_PARQUET} row 0: sentence2 is empty or not text \(0\)"),
    ("missing-column", parquet_files("test", lambda frame: frame.drop(columns="sentence1")),
     rf".*/{TEST_PARQUET}: missing column 'sentence1' \(found: sentence2, label, idx\)"),
    ("renamed-column", parquet_files("train", lambda frame: frame.rename(columns={"label": "quality"})),
     rf".*/{TRAIN_PARQUET}: missing column 'label' \(found: sentence1, sentence2, quality, idx\)"),
    ("no-rows", parquet_files("train", lambda frame: frame.iloc[0:0]), rf".*/{TRAIN_PARQUET}: no rows"),
    ("missing-split", damaged_file(f"mrpc/{TEST_PARQUET}", lambda path: path.unlink()),
     r"split 'test' missing: no file .*/mrpc/test-\*\.parquet"),
    ("truncated-parquet", damaged_file(f"mrpc/{VALIDATION_PARQUET}", truncated),
     rf".*/{VALIDATION_PARQUET}: unreadable parquet file \(.+\)"),
    ("not-parquet", damaged_file(f"mrpc/{TRAIN_PARQUET}", lambda path: path.write_text("idx,label\n0,1\n")),
     rf".*/{TRAIN_PARQUET}: unreadable parquet file \(.+\)"),
    ("tsv-label-text", damaged_file("MRPC/train.tsv", tsv_cell(3, 0, "yes"), write_tsv_layout),
     r".*/MRPC/train.tsv row 3: label 'yes' is not one of 0, 1"),
    ("tsv-missing-column", damaged_file("MRPC/dev.tsv", edited_tsv(
        lambda lines: ["\t".join(line.split("\t")[:4]) for line in lines]), write_tsv_layout),
     r".*/MRPC/dev.tsv: missing column '#2 String' \(found: Quality, #1 ID, #2 ID, #1 String\)"),
    ("tsv-empty-sentence", damaged_file("MRPC/dev.tsv", tsv_cell(2, 3, ""), write_tsv_layout),
     r".*/MRPC/dev.tsv row 2: sentence1 is empty or not text \(''\)"),
    ("tsv-truncated-row", damaged_file("MRPC/test.tsv", edited_tsv(
        lambda lines: lines[:-1] + [lines[-1].split("\t")[0]]), write_tsv_layout),
     rf".*/MRPC/test.tsv row {SPLIT_ROWS['test'] - 1}: sentence1 is empty or not text \(None\)"),
]


@pytest.mark.parametrize(("write", "message"), [case[1:] for case in BAD_DATA], ids=[case[0] for case in BAD_DATA])
def test_bad_data_file_is_named_with_row_and_problem(project, tmp_path_factory, monkeypatch, capsys, write, message):
    glue_dir = write(tmp_path_factory.mktemp("bad-glue"))
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    status, stderr = run_failing(download, capsys)
    assert status == 1
    assert stderr.count("\n") == 1
    assert re.fullmatch(f"error: {message}\n", stderr), stderr
    assert not (project / "data").exists()


def test_a_best_model_metric_the_task_lacks_stops_train_before_it_writes(project, tiny_params, tmp_path_factory,
                                                                          monkeypatch, capsys):
    monkeypatch.setenv("GLUE_DIR", str(write_glue_task(tmp_path_factory.mktemp("glue-rte"), "rte", "parquet")))
    write_params(project, tiny_params, dataset_config="rte", best_model_metric="f1")
    download.main()
    tokenize.main()
    status, stderr = run_failing(train, capsys)
    assert status == 1
    assert stderr == ("error: params.yaml: best_model_metric must be auto, loss or one of the rte metrics (accuracy, "
                      "balanced_accuracy, macro_f1), got 'f1'\n")
    assert not (project / "trained_model").exists() and not (project / "checkpoints").exists()


@pytest.mark.parametrize(("class_weights", "message"), [
    ({"equivalent": 3}, "class_weights gives no weight to label 'not_equivalent' (name every label of mrpc: "
                        "not_equivalent, equivalent)"),
    ({"equivalent": 3, "not_equivalent": 1, "paraphrase": 2},
     "class_weights names 'paraphrase', not a label of mrpc (not_equivalent, equivalent)"),
    ({0: 1, 1: 3}, "class_weights names '0', not a label of mrpc (not_equivalent, equivalent)"),
])
def test_class_weights_the_task_does_not_have_stop_train_before_it_writes(project, tiny_params, capsys,
                                                                           class_weights, message):
    write_params(project, tiny_params, class_weights=class_weights)
    download.main()
    tokenize.main()
    status, stderr = run_failing(train, capsys)
    assert status == 1 and stderr == f"error: params.yaml: {message}\n"
    assert not (project / "trained_model").exists() and not (project / "checkpoints").exists()


def test_class_weights_of_a_regression_stop_train(project, tiny_params, tmp_path_factory, monkeypatch, capsys):
    monkeypatch.setenv("GLUE_DIR", str(write_glue_task(tmp_path_factory.mktemp("glue-stsb"), "stsb", "parquet")))
    write_params(project, tiny_params, dataset_config="stsb", class_weights="balanced")
    download.main()
    tokenize.main()
    status, stderr = run_failing(train, capsys)
    assert status == 1 and stderr == ("error: params.yaml: class_weights must be none for a regression task (stsb has "
                                      "scores, not classes), got 'balanced'\n")
