"""Fixtures the tests make themselves: a tiny random BERT, synthetic MRPC in both layouts,
and a scratch project folder with tiny params, so no test needs the network."""

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
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
    """GLUE's own files: Quality/#1 ID/#2 ID/#1 String/#2 String, test.tsv without labels."""
    (glue_dir / "MRPC").mkdir(parents=True)
    for seed, (split, file_name) in enumerate([("train", "train.tsv"), ("validation", "dev.tsv"), ("test", "test.tsv")]):
        frame = synthetic_pairs(SPLIT_ROWS[split], seed)
        lines = ["index\t#1 ID\t#2 ID\t#1 String\t#2 String" if split == "test"
                 else "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        for row in frame.itertuples():
            first = row.idx if split == "test" else row.label
            lines.append(f'{first}\t{1000 + row.idx}\t{2000 + row.idx}\t{row.sentence1} "quoted\t{row.sentence2}')
        (glue_dir / "MRPC" / file_name).write_text("\n".join(lines) + "\n")
    return glue_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer BERT with random weights and a vocabulary of the synthetic words."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    model_dir = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", '"', *WORDS]
    vocab_file = model_dir / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), model_max_length=64)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertForSequenceClassification(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


# Attention dropout this small keeps every element, yet a training forward draws and applies
# the fast CPU dropout's masks in attention (stages/fast_dropout.py): comparable exactly with
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


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_params, glue_parquet_dir):
    """An empty project folder with tiny params as the working directory, GLUE_DIR set."""
    write_params(tmp_path, tiny_params)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GLUE_DIR", str(glue_parquet_dir))
    return tmp_path


def write_params(project_dir, params, **changes):
    (project_dir / "params.yaml").write_text(yaml.safe_dump({**params, **changes}, sort_keys=False))


def run_stage_process(stage, cwd, env_changes=None, launcher=(sys.executable,)):
    """Run `python -m stages.<stage>` as dvc would (or `<launcher> -m stages.<stage>`),
    from `cwd`, with the project importable."""
    return run_module(f"stages.{stage}", cwd, env_changes=env_changes, launcher=launcher)


def run_module(module, cwd, arguments=(), env_changes=None, launcher=(sys.executable,)):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env_changes or {})}
    return subprocess.run([*launcher, "-m", module, *arguments], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def dvc_environment(glue_dir):
    """Environment for the real `dvc` and `git` CLIs on a test repository."""
    return {
        **os.environ,
        "GLUE_DIR": str(glue_dir),
        "HF_HUB_OFFLINE": "1",
        # dvc must run the stages with this interpreter, whatever PATH the tests got.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
    }


def copy_project(destination):
    """The files a user clones, without any local artifact."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(PROJECT_ROOT / name, destination / name)
    for package in ("stages", "finetune"):
        shutil.copytree(PROJECT_ROOT / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    (destination / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy(PROJECT_ROOT / ".dvc" / name, destination / ".dvc" / name)
    return destination
