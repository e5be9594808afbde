"""The CPU speed-ups (finetune/training/cpu_speedups/): each gives transformers' own results (logits,
losses, gradients; dropout masks in law), leaves nothing in the saved model, and says which
applied. These tests compare with transformers' stock code, so they fail when it changes under
the speed-ups."""

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertForTokenClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
)

from finetune.training.cpu_speedups import apply_cpu_speedups
from finetune.training.cpu_speedups.dropout import cpu_dropout, use_fast_cpu_dropout, use_plain_attention
from finetune.training.cpu_speedups.first_token_head import compute_last_layer_for_first_token_only
from tests.conftest import NOTHING_DROPPED, padded_tiny_batch

NO_DROPOUT = {"attention_probs_dropout_prob": 0.0, "hidden_dropout_prob": 0.0}


def load(model_dir, attention="sdpa", **config):
    return AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation=attention, **config)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_drops_the_asked_share_and_scales_up_the_rest(p):
    inputs = torch.ones(2_000_000, requires_grad=True)
    outputs = cpu_dropout(inputs, p)
    dropped = (outputs == 0).float().mean().item()
    assert abs(dropped - p) < 0.002  # 2e6 draws: the share's standard deviation is <= 0.00035
    assert torch.allclose(outputs[outputs != 0], torch.tensor(1 / (1 - p)))
    outputs.sum().backward()
    assert torch.equal(inputs.grad, outputs.detach())  # gradient flows through kept elements only


def test_dropout_masks_follow_the_torch_seed():
    inputs = torch.ones(10_000)
    torch.manual_seed(3)
    first = cpu_dropout(inputs, 0.1)
    torch.manual_seed(3)
    assert torch.equal(cpu_dropout(inputs, 0.1), first)
    assert not torch.equal(cpu_dropout(inputs, 0.1), first)


def test_predictions_and_saved_model_unchanged(tiny_model_dir, tmp_path):
    model = load(tiny_model_dir).eval()
    with torch.no_grad():
        before = model(**padded_tiny_batch()).logits
        assert use_fast_cpu_dropout(model) and use_plain_attention(model)
        assert torch.equal(model(**padded_tiny_batch()).logits, before)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config._attn_implementation == "sdpa"
    with torch.no_grad():
        assert torch.equal(reloaded(**padded_tiny_batch()).logits, before)


def test_training_attention_with_nothing_dropped_equals_transformers_attention(tiny_model_dir):
    # Nothing is dropped, so the training path of the plain attention must give what
    # transformers' own attention gives, padding included.
    reference = load(tiny_model_dir, **NOTHING_DROPPED).train()
    fast = load(tiny_model_dir, **NOTHING_DROPPED).train()
    assert use_plain_attention(fast)
    assert fast.config._attn_implementation != reference.config._attn_implementation
    assert torch.allclose(fast(**padded_tiny_batch()).logits, reference(**padded_tiny_batch()).logits, atol=1e-6)


@pytest.mark.parametrize("attention", ["sdpa", "eager", "plain"])
def test_first_token_layer_same_logits_and_untouched_saved_model(tiny_model_dir, tmp_path, attention):
    implementation = "sdpa" if attention == "plain" else attention
    full = load(tiny_model_dir, implementation).eval()
    first_token = load(tiny_model_dir, implementation).eval()
    if attention == "plain":
        use_plain_attention(first_token)
    assert compute_last_layer_for_first_token_only(first_token)
    with torch.no_grad():
        expected = full(**padded_tiny_batch()).logits
        assert torch.allclose(first_token(**padded_tiny_batch()).logits, expected, atol=1e-6)
        first_token.save_pretrained(tmp_path)
        reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
        assert torch.allclose(reloaded(**padded_tiny_batch()).logits, expected, atol=1e-6)
        assert reloaded.bert.encoder.layer[-1](torch.zeros(1, 4, 32))[0].shape == (4, 32)  # all tokens


@pytest.mark.parametrize("dropout", [NO_DROPOUT, NOTHING_DROPPED])
def test_all_speedups_same_loss_and_gradients_in_training(tiny_model_dir, dropout):
    full = load(tiny_model_dir, **dropout).train()
    fast = load(tiny_model_dir, **dropout).train()
    apply_cpu_speedups(fast, on_cpu=True)
    full_loss, fast_loss = full(**padded_tiny_batch()).loss, fast(**padded_tiny_batch()).loss
    assert torch.allclose(fast_loss, full_loss, atol=1e-6)
    full_loss.backward()
    fast_loss.backward()
    gradients = dict(fast.named_parameters())
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


def test_the_summary_names_what_was_applied_and_what_skipped(tiny_model_dir):
    assert apply_cpu_speedups(load(tiny_model_dir).train(), on_cpu=True) == (
        "applied: glibc keeps freed memory, fast dropout masks, plain attention in training, "
        "last layer for [CLS] only; skipped: none")
    assert apply_cpu_speedups(load(tiny_model_dir, **NO_DROPOUT), on_cpu=False) == (
        "applied: last layer for [CLS] only; skipped: glibc, dropout and attention switches (training on a GPU)")
    gpt2 = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
                                                    attn_pdrop=0.0, attn_implementation="eager"))
    assert apply_cpu_speedups(gpt2, on_cpu=True) == (
        "applied: glibc keeps freed memory; skipped: fast dropout masks (no dropout > 0), plain attention in "
        "training (eager attention), last layer for [CLS] only (not a BERT classifier: GPT2ForSequenceClassification)")
