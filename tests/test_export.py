"""The export stage on the tiny model: the ONNX and int8 files, their scores against PyTorch's in
metrics/export.json and the card, and the known pitfalls of exporting (padding in other batches than
the traced one, models without token_type_ids, CPUs without VNNI)."""

import json

import numpy as np
import pytest

from finetune.core.errors import run_stage
from finetune.serving import onnx_export
from finetune.serving.engines import INT8_FILE, ONNX_FILE, OnnxEngine, TorchEngine
from finetune.serving.served import SERVING_FILE, Served
from stages import download, evaluate, export, publish, tokenize, train
from tests.conftest import WORDS, run_stages_in
from tests.repos import write_params

# Texts of many lengths, batched so that most rows are padded, none as the traced batch was.
TEXTS = [[" ".join(WORDS[index % 7:index % 7 + length]) for index, length in enumerate([1, 9, 3, 14, 2, 6, 11, 4])],
         [" ".join(WORDS[::-1][:length]) for length in [5, 2, 12, 1, 8, 3, 7, 10]]]


@pytest.fixture(scope="module")
def exported_project(tmp_path_factory, tiny_params, glue_parquet_dir):
    return run_stages_in(tmp_path_factory.mktemp("exported"), tiny_params,
                         (download, tokenize, train, evaluate, export, publish), glue_parquet_dir)


def test_export_writes_onnx_and_int8_with_the_tokenizer_and_scores_them(exported_project):
    folder = exported_project / "exported"
    assert {ONNX_FILE, INT8_FILE, SERVING_FILE, "tokenizer.json", "config.json"} <= {path.name for path in folder.iterdir()}
    assert not (folder / "model.safetensors").exists()  # the weights are in the graphs
    metrics = json.loads((exported_project / "metrics" / "export.json").read_text())
    validation = metrics["validation"]
    assert validation["onnx"]["agreement"] == 1.0 and validation["onnx"]["max_probability_difference"] < 1e-4
    assert validation["onnx"]["f1"] == pytest.approx(validation["torch_fp32"]["f1"])
    assert 0.5 <= validation["int8"]["agreement"] <= 1.0
    assert validation["int8_f1_loss"] == pytest.approx(validation["torch_fp32"]["f1"] - validation["int8"]["f1"])
    card = (exported_project / "models" / "README.md").read_text()
    assert "## ONNX and int8" in card and f"| validation | int8 | {validation['int8']['f1']:.4f} |" in card
    assert metrics["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_the_onnx_model_predicts_as_torch_on_padded_batches(exported_project, batch_size):
    torch_logits = TorchEngine(exported_project / "models", batch_size, "fp32").logits(TEXTS)
    onnx_logits = OnnxEngine(exported_project / "exported", batch_size, ONNX_FILE).logits(TEXTS)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)
    # int8 is near, not equal: its every weight is rounded to 255 levels.
    int8_logits = OnnxEngine(exported_project / "exported", batch_size, INT8_FILE).logits(TEXTS)
    assert np.abs(int8_logits - torch_logits).max() < 0.5


def test_a_model_without_token_type_ids_exports_and_agrees(tmp_path, tiny_model_dir):
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    from finetune.core.tasks import GLUE_TASKS

    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=64, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64)
    DistilBertForSequenceClassification(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path)  # gives token_type_ids all the same
    serves = Served(GLUE_TASKS["mrpc"], 32, 0.5)
    (tmp_path / SERVING_FILE).write_text(serves.to_json())
    assert onnx_export.export_onnx(tmp_path, tmp_path / ONNX_FILE, 32) == ["input_ids", "attention_mask"]
    onnx_export.quantise(tmp_path / ONNX_FILE, tmp_path / INT8_FILE)
    np.testing.assert_allclose(OnnxEngine(tmp_path, 3, ONNX_FILE).logits(TEXTS),
                               TorchEngine(tmp_path, 3, "fp32").logits(TEXTS), atol=1e-4)


@pytest.mark.parametrize("vnni", [True, False])
def test_without_vnni_the_int8_weights_use_seven_bits(exported_project, tmp_path, monkeypatch, vnni):
    import onnx

    monkeypatch.setattr(onnx_export, "has_vnni", lambda: vnni)
    reduced, kept = onnx_export.quantise(exported_project / "exported" / ONNX_FILE, tmp_path / INT8_FILE)
    assert reduced is not vnni and any("classifier" in name for name in kept)
    weights = [tensor for tensor in onnx.load(tmp_path / INT8_FILE).graph.initializer
               if tensor.name.endswith("_quantized") and tensor.data_type == onnx.TensorProto.INT8]
    largest = max(int(np.abs(onnx.numpy_helper.to_array(tensor).astype(np.int16)).max()) for tensor in weights)
    assert largest == (127 if vnni else 64)  # symmetric: 8 bits reach 127, 7 bits 64


def test_a_trial_exports_nothing(project, tiny_params):
    download.main()
    write_params(project, {**tiny_params, "trial": "study/3"})  # its train stage keeps no weights
    run_stage(export.main)
    assert json.loads((project / "metrics" / "export.json").read_text()) == {"exported": False}
    assert [path.name for path in (project / "exported").iterdir()] == ["README.md"]
