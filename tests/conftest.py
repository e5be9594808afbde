"""Fixtures the tests make themselves: a tiny random BERT, synthetic data for any GLUE task in
both offline layouts and for your own files, and a scratch project folder with tiny params, so
no test needs the network."""

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import settings

from tests.repos import PROJECT_ROOT, copy_repository, make_git_project, runner, write_params

# CI draws the property-based tests' examples from a fixed seed, so that a failure there
# reproduces anywhere (`CI=true pytest ...`); elsewhere Hypothesis explores new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

WORDS = "the a cat dog bird sat ran flew on under over mat log tree quickly slowly today yesterday".split()
SPLIT_ROWS = {"train": 48, "validation": 16, "test": 16}


def synthetic_pairs(rows, seed):
    """Pairs whose label is learnable: 1 when sentence2 reorders sentence1's words."""
    generator = random.Random(seed)
    records = []
    for index in range(rows):
        words = generator.choices(WORDS, k=generator.randint(4, 12))
        label = index % 2
        other = list(words) if label else generator.choices(WORDS, k=len(words))
        generator.shuffle(other)
        records.append({"sentence1": " ".join(words), "sentence2": " ".join(other), "label": label, "idx": index})
    return pd.DataFrame.from_records(records)


def write_parquet_layout(glue_dir, frames=None):
    frames = frames or {split: synthetic_pairs(rows, seed) for seed, (split, rows) in enumerate(SPLIT_ROWS.items())}
    (glue_dir / "mrpc").mkdir(parents=True)
    for split, frame in frames.items():
        frame.to_parquet(glue_dir / "mrpc" / f"{split}-00000-of-00001.parquet", index=False)
    return glue_dir


def write_tsv_layout(glue_dir):
    """GLUE's own MRPC files: Quality/#1 ID/#2 ID/#1 String/#2 String, test.tsv without labels,
    train.tsv and dev.tsv starting with a byte-order mark, as GLUE's download script leaves them."""
    return write_glue_task(glue_dir, "mrpc", "tsv")


def split_rows(split):
    """SPLIT_ROWS for any split name (MNLI's validation_matched has validation's rows)."""
    return SPLIT_ROWS[split.split("_")[0]]


def synthetic_task_frame(task, rows, seed, labelled=True):
    """Rows whose label the text determines, for any task of finetune/core/tasks.py (columns: the
    task's text columns, label, idx). One sentence: the class picks which half of WORDS it is
    written with. A pair: how many of sentence1's words sentence2 reorders; all of them for
    class 1 of two (as in `synthetic_pairs`, which this equals for two classes), all, half or
    none for three classes, and a score of 5 x the kept share for a regression."""
    generator = random.Random(seed)
    records = []
    for index in range(rows):
        words = generator.choices(WORDS, k=generator.randint(4, 12))
        label = index % task.num_labels
        if len(task.text_columns) == 1:
            half = len(WORDS) // 2
            vocabulary = WORDS[:half] if label else WORDS[half:]
            texts = [" ".join(vocabulary[WORDS.index(word) % half] for word in words)]
        else:
            if task.regression:
                kept = generator.randint(0, len(words))
                label = round(5 * kept / len(words), 2)
            else:
                kept = len(words) if label == 1 else 0  # two classes
                if task.num_labels == 3:
                    kept = [len(words), len(words) // 2, 0][label]
            other = words[:kept] + generator.choices(WORDS, k=len(words) - kept)
            generator.shuffle(other)
            texts = [" ".join(words), " ".join(other)]
        if not labelled:
            label = -1.0 if task.regression else -1
        records.append({**dict(zip(task.text_columns, texts, strict=True)), "label": label, "idx": index})
    return pd.DataFrame.from_records(records)


# GLUE's TSV files: folder, header of train/dev (None: no header line), a train/dev row, and the
# same for test files (no label). {a}, {b}: the texts; {i}: row number; {label}: as GLUE writes it.
GLUE_TSV_FILES = {
    "cola": ("CoLA", None, "gj04\t{label}\t{star}\t{a}", "index\tsentence", "{i}\t{a}"),
    "sst2": ("SST-2", "sentence\tlabel", "{a}\t{label}", "index\tsentence", "{i}\t{a}"),
    "mrpc": ("MRPC", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "{label}\t{id1}\t{id2}\t{a}\t{b}",
             "index\t#1 ID\t#2 ID\t#1 String\t#2 String", "{i}\t{id1}\t{id2}\t{a}\t{b}"),
    "qqp": ("QQP", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "{i}\t{id1}\t{id2}\t{a}\t{b}\t{label}",
            "id\tquestion1\tquestion2", "{i}\t{a}\t{b}"),
    "stsb": ("STS-B", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
             "{i}\tmain-captions\tMSRvid\t2012test\t{id1}\tnone\tnone\t{a}\t{b}\t{label}",
             "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2",
             "{i}\tmain-captions\tMSRvid\t2012test\t{id1}\tnone\tnone\t{a}\t{b}"),
    "mnli": ("MNLI", "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse"
             "\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label",
             "{i}\t{id1}\t{id1}e\tfiction\t( {a} )\t( {b} )\t(ROOT {a})\t(ROOT {b})\t{a}\t{b}\t{label}\t{label}",
             "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse"
             "\tsentence2_parse\tsentence1\tsentence2",
             "{i}\t{id1}\t{id1}e\tfiction\t( {a} )\t( {b} )\t(ROOT {a})\t(ROOT {b})\t{a}\t{b}"),
    "qnli": ("QNLI", "index\tquestion\tsentence\tlabel", "{i}\t{a}\t{b}\t{label}", "index\tquestion\tsentence",
             "{i}\t{a}\t{b}"),
    "rte": ("RTE", "index\tsentence1\tsentence2\tlabel", "{i}\t{a}\t{b}\t{label}", "index\tsentence1\tsentence2",
            "{i}\t{a}\t{b}"),
    "wnli": ("WNLI", "index\tsentence1\tsentence2\tlabel", "{i}\t{a}\t{b}\t{label}", "index\tsentence1\tsentence2",
             "{i}\t{a}\t{b}"),
}
GLUE_TSV_NAMED_LABELS = ("mnli", "qnli", "rte")  # their TSV files write class names, not indices
# The Hub's MRPC test split has labels; every other GLUE test split has -1 (-1.0 for STS-B).
HUB_LABELLED_TESTS = ("mrpc",)


def glue_task_frames(config, layout):
    """The synthetic frames `write_glue_task` writes, per split (labels as data/raw holds them)."""
    from finetune.core.tasks import GLUE_TASKS

    task = GLUE_TASKS[config]
    return {split: synthetic_task_frame(task, split_rows(split), seed, labelled=split not in task.test_splits
                                        or (layout == "parquet" and config in HUB_LABELLED_TESTS))
            for seed, split in enumerate(task.splits)}


def write_glue_task(glue_dir, config, layout):
    """Learnable synthetic data for GLUE task `config`, as the Hub's parquet files ("parquet":
    <config>/<split>-00000-of-00001.parquet) or GLUE's own TSV files ("tsv": e.g. STS-B/dev.tsv,
    unquoted, with a bare " in the first text of each row)."""
    from finetune.core.tasks import GLUE_TASKS

    task, frames = GLUE_TASKS[config], glue_task_frames(config, layout)
    if layout == "parquet":
        (glue_dir / config).mkdir(parents=True, exist_ok=True)
        for split, frame in frames.items():
            frame.to_parquet(glue_dir / config / f"{split}-00000-of-00001.parquet", index=False)
        return glue_dir
    folder, header, row_format, test_header, test_row_format = GLUE_TSV_FILES[config]
    (glue_dir / folder).mkdir(parents=True, exist_ok=True)
    for split, frame in frames.items():
        test = split in task.test_splits
        lines = [test_header] if test else [header] if header else []
        for row in frame.to_dict("records"):
            label = row["label"]
            if config in GLUE_TSV_NAMED_LABELS:
                label = task.label_names[label]
            texts = [row[column] for column in task.text_columns]
            lines.append((test_row_format if test else row_format).format(
                i=row["idx"], id1=1000 + row["idx"], id2=2000 + row["idx"], a=texts[0] + ' "quoted', b=texts[-1],
                label=label, star="" if label else "*"))
        file_name = split.replace("validation", "dev") + ".tsv"
        # GLUE's own MRPC train.tsv and dev.tsv begin with a byte-order mark.
        encoding = "utf-8-sig" if config == "mrpc" and not test else "utf-8"
        (glue_dir / folder / file_name).write_text("\n".join(lines) + "\n", encoding=encoding)
    return glue_dir


def own_data_frame(split, text_columns, label_column, labels, seed):
    """Rows of your own data: class `labels[i % len(labels)]` picks the slice of WORDS its texts
    are written with; `labels` None: a regression whose score is 5 x the share of WORDS' first half."""
    generator = random.Random(seed)
    classes = len(labels) if labels else 2
    records = []
    for index in range(split_rows(split)):
        texts = [generator.choices(WORDS[index % classes::classes], k=generator.randint(4, 10)) for _ in text_columns]
        if labels:
            label = labels[index % classes]
        else:
            words = generator.choices(WORDS, k=8)
            texts[0] = words
            label = round(5 * sum(WORDS.index(word) < len(WORDS) // 2 for word in words) / 8 + 0.01, 3)
        texts = {column: " ".join(text) for column, text in zip(text_columns, texts, strict=True)}
        records.append({**texts, label_column: label})
    return pd.DataFrame.from_records(records)


def write_own_data(folder, fmt, text_columns, label_column, labels, *, test_labels=True, validation_name="validation"):
    """Your own data in format `fmt` (csv, tsv, json, jsonl, parquet): train, validation (or
    `validation_name`) and test files, with the columns `text_columns` and `label_column`.
    `labels`: the classes as written (strings or integers), or None for float scores."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (split, name) in enumerate([("train", "train"), ("validation", validation_name), ("test", "test")]):
        frame = own_data_frame(split, text_columns, label_column, labels, seed)
        if split == "test" and not test_labels:
            frame = frame.drop(columns=label_column)
        write_frame(frame, folder / f"{name}.{fmt}", fmt)
    return folder


def write_frame(frame, path, fmt):
    """A DataFrame as a file of your own data in format `fmt`."""
    if fmt in ("csv", "tsv"):
        frame.to_csv(path, sep="," if fmt == "csv" else "\t", index=False)
    elif fmt == "json":
        path.write_text(json.dumps(frame.to_dict("records"), indent=1))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(record) + "\n" for record in frame.to_dict("records")))
    else:
        frame.to_parquet(path, index=False)


# A multi-label set's labels, each written with its own third of WORDS.
TOPICS = ("animals", "places", "times")


def multi_label_frame(split, seed):
    """Rows with one to three TOPICS each (cycling through every non-empty set), each topic's words
    in the text: learnable, and every label set occurs."""
    generator = random.Random(seed)
    sets = [[topic for bit, topic in enumerate(TOPICS) if mask >> bit & 1] for mask in range(1, 2 ** len(TOPICS))]
    records = []
    for index in range(split_rows(split)):
        topics = sets[index % len(sets)]
        words = [word for topic in topics for word in generator.choices(WORDS[TOPICS.index(topic)::3], k=3)]
        records.append({"text": " ".join(generator.sample(words, len(words))), "topics": topics})
    return records


def write_multi_label_data(folder, form, fmt=None):
    """A multi-label set in one of its forms: "list" (a column of lists: json, jsonl or parquet),
    "delimited" (names joined by "|" in a csv or tsv cell) or "flags" (a 0/1 column per topic)."""
    folder.mkdir(parents=True, exist_ok=True)
    fmt = fmt or {"list": "jsonl", "delimited": "csv", "flags": "csv"}[form]
    for seed, split in enumerate(("train", "validation", "test")):
        records = multi_label_frame(split, seed)
        if form == "delimited":
            records = [{"text": record["text"], "topics": "|".join(record["topics"])} for record in records]
        elif form == "flags":
            records = [{"text": record["text"], **{topic: int(topic in record["topics"]) for topic in TOPICS}}
                       for record in records]
        path = folder / f"{split}.{fmt}"
        if fmt == "jsonl":
            path.write_text("".join(json.dumps(record) + "\n" for record in records))
        elif fmt == "json":
            path.write_text(json.dumps(records))
        elif fmt == "parquet":
            pd.DataFrame.from_records(records).to_parquet(path, index=False)
        else:
            pd.DataFrame.from_records(records).to_csv(path, sep="," if fmt == "csv" else "\t", index=False)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer BERT with random weights and a vocabulary of the synthetic words."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    model_dir = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", '"', *WORDS]
    vocab_file = model_dir / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    # `vocab`: transformers 5 ignores a `vocab_file` keyword (every word became [UNK]).
    tokenizer = BertTokenizerFast(vocab=str(vocab_file), model_max_length=64)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)  # the same tiny model in every test session: results tests can rely on
    BertForSequenceClassification(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


# Attention dropout this small keeps every element, yet a training forward draws and applies
# the fast CPU dropout's masks in attention (finetune/training/cpu_speedups/dropout.py): comparable exactly with
# transformers' own attention.
NOTHING_DROPPED = {"attention_probs_dropout_prob": 1e-9, "hidden_dropout_prob": 0.0}


def padded_tiny_batch():
    """Three pairs for the tiny BERT, two of them padded, with labels."""
    import torch

    input_ids = torch.tensor([[2, 7, 8, 9, 10, 3], [2, 11, 12, 3, 0, 0], [2, 13, 3, 0, 0, 0]])
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(), "labels": torch.tensor([1, 0, 1])}


@pytest.fixture(scope="session")
def glue_parquet_dir(tmp_path_factory):
    return write_parquet_layout(tmp_path_factory.mktemp("glue-parquet"))


@pytest.fixture(scope="session")
def tiny_params(tiny_model_dir):
    """params.yaml with every key, shrunk so a whole pipeline runs in seconds."""
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    # With dropout, so that the tests see its random masks (seeds, resumed runs); no
    # checkpoint in a run of a dozen steps unless a test asks for them.
    params.update(checkpoint=str(tiny_model_dir), max_length=32, epochs=2, train_batch_size=8, eval_batch_size=16,
                  eval_steps=4, logging_steps=2, precision="fp32", lr=1e-3, dropout=0.1, save_steps=100)
    return params


def run_stages_in(project_dir, params, stages, glue_dir=None):
    """Run `stages` (modules of stages/) in-process, in order, in `project_dir` with `params` and,
    where given, GLUE_DIR=`glue_dir`; returns the folder."""
    write_params(project_dir, params)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(project_dir)
        if glue_dir is not None:
            monkeypatch.setenv("GLUE_DIR", str(glue_dir))
        for stage in stages:
            stage.main()
    return project_dir


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_params, glue_parquet_dir):
    """An empty project folder with tiny params as the working directory, GLUE_DIR set."""
    write_params(tmp_path, tiny_params)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GLUE_DIR", str(glue_parquet_dir))
    return tmp_path


def run_stage_process(stage, cwd, env_changes=None, launcher=(sys.executable,)):
    """Run `python -m stages.<stage>` as dvc would (or `<launcher> -m stages.<stage>`),
    from `cwd`, with the project importable."""
    return run_module(f"stages.{stage}", cwd, env_changes=env_changes, launcher=launcher)


def run_module(module, cwd, arguments=(), env_changes=None, launcher=(sys.executable,)):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env_changes or {})}
    return subprocess.run([*launcher, "-m", module, *arguments], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@dataclasses.dataclass(frozen=True)
class ReproducedRepository:
    root: Path
    env: dict
    first_repro: str  # what the `dvc repro` printed


@pytest.fixture(scope="session")
def reproduced_repository(tmp_path_factory, tiny_params, glue_parquet_dir):
    """The project with tiny params, committed to a fresh Git repository, after one `dvc repro`
    (its outputs not committed): the one expensive set-up every end-to-end test that starts
    from a finished run shares. Copy it with `copy_repository` before changing anything."""
    root = tmp_path_factory.mktemp("reproduced") / "project"
    env = make_git_project(root, tiny_params, glue_parquet_dir)
    return ReproducedRepository(root, env, runner(root, env)("dvc", "repro"))


@pytest.fixture(scope="module")
def tuning_repository(tmp_path_factory, reproduced_repository):
    """A copy of the shared tiny run, committed, with a small search space (space.yaml): (root, run)."""
    root = copy_repository(reproduced_repository.root, tmp_path_factory.mktemp("tuning") / "project")
    run = runner(root, reproduced_repository.env)
    (root / "space.yaml").write_text("lr: {low: 1.0e-4, high: 1.0e-2, log: true}\ntrain_batch_size: {choices: [8, 16]}\n")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "first run")
    return root, run
