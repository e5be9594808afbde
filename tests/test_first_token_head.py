"""The classifier's last layer computed for the first token only: the same logits, loss and
gradients as the full layer, and nothing of it in the saved model."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertForTokenClassification

from stages.fast_dropout import use_fast_cpu_dropout
from stages.first_token_head import compute_last_layer_for_first_token_only
from tests.conftest import NOTHING_DROPPED, padded_tiny_batch

NO_DROPOUT = {"attention_probs_dropout_prob": 0.0, "hidden_dropout_prob": 0.0}


def load(model_dir, attention="sdpa", **config):
    return AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation=attention, **config)


@pytest.mark.parametrize("attention", ["sdpa", "eager", "fast_cpu_dropout"])
def test_same_logits_and_untouched_saved_model(tiny_model_dir, tmp_path, attention):
    implementation = "sdpa" if attention == "fast_cpu_dropout" else attention
    full = load(tiny_model_dir, implementation).eval()
    first_token = load(tiny_model_dir, implementation).eval()
    if attention == "fast_cpu_dropout":
        use_fast_cpu_dropout(first_token)
    assert compute_last_layer_for_first_token_only(first_token)
    with torch.no_grad():
        expected = full(**padded_tiny_batch()).logits
        assert torch.allclose(first_token(**padded_tiny_batch()).logits, expected, atol=1e-6)
        first_token.save_pretrained(tmp_path)
        reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
        assert torch.allclose(reloaded(**padded_tiny_batch()).logits, expected, atol=1e-6)
        assert reloaded.bert.encoder.layer[-1](torch.zeros(1, 4, 32))[0].shape == (4, 32)  # all tokens


@pytest.mark.parametrize("dropout", [NO_DROPOUT, NOTHING_DROPPED])
def test_same_loss_and_gradients_in_training(tiny_model_dir, dropout):
    full = load(tiny_model_dir, **dropout).train()
    first_token = load(tiny_model_dir, **dropout).train()
    use_fast_cpu_dropout(first_token)
    assert compute_last_layer_for_first_token_only(first_token)
    full_loss, first_token_loss = full(**padded_tiny_batch()).loss, first_token(**padded_tiny_batch()).loss
    assert torch.allclose(first_token_loss, full_loss, atol=1e-6)
    full_loss.backward()
    first_token_loss.backward()
    gradients = dict(first_token.named_parameters())
    for name, parameter in full.named_parameters():
        assert torch.allclose(gradients[name].grad, parameter.grad, atol=1e-6), name


def test_dropout_still_trains_the_first_token_path(tiny_model_dir):
    model = load(tiny_model_dir).train()
    compute_last_layer_for_first_token_only(model)
    torch.manual_seed(0)
    first = model(**padded_tiny_batch()).logits
    assert not torch.equal(model(**padded_tiny_batch()).logits, first)  # other masks, other logits
    torch.manual_seed(0)
    assert torch.equal(model(**padded_tiny_batch()).logits, first)  # a seed fixes them


def test_models_reading_every_token_are_left_whole(tiny_model_dir):
    token_classifier = BertForTokenClassification.from_pretrained(tiny_model_dir).eval()
    assert not compute_last_layer_for_first_token_only(token_classifier)
    with torch.no_grad():
        logits = token_classifier(input_ids=padded_tiny_batch()["input_ids"]).logits
    assert logits.shape[:2] == (3, 6)
    assert not compute_last_layer_for_first_token_only(load(tiny_model_dir, output_hidden_states=True))
