"""The train stage's CPU dropout: the masks PyTorch's would draw in law, and nothing else
of the model changed."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from stages.fast_dropout import cpu_dropout, use_fast_cpu_dropout
from tests.conftest import NOTHING_DROPPED, padded_tiny_batch


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drops_the_asked_share_and_scales_up_the_rest(p):
    inputs = torch.ones(2_000_000, requires_grad=True)
    outputs = cpu_dropout(inputs, p)
    dropped = (outputs == 0).float().mean().item()
    assert abs(dropped - p) < 0.002  # 2e6 draws: the share's standard deviation is <= 0.00035
    assert torch.allclose(outputs[outputs != 0], torch.tensor(1 / (1 - p)))
    outputs.sum().backward()
    assert torch.equal(inputs.grad, outputs.detach())  # gradient flows through kept elements only


def test_masks_follow_the_torch_seed():
    inputs = torch.ones(10_000)
    torch.manual_seed(3)
    first = cpu_dropout(inputs, 0.1)
    torch.manual_seed(3)
    assert torch.equal(cpu_dropout(inputs, 0.1), first)
    assert not torch.equal(cpu_dropout(inputs, 0.1), first)


def test_predictions_and_saved_model_unchanged(tiny_model_dir, tmp_path):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        before = model(**padded_tiny_batch()).logits
        use_fast_cpu_dropout(model)
        assert torch.equal(model(**padded_tiny_batch()).logits, before)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config._attn_implementation == "sdpa"
    with torch.no_grad():
        assert torch.equal(reloaded(**padded_tiny_batch()).logits, before)


def test_training_attention_with_nothing_dropped_equals_transformers_attention(tiny_model_dir):
    # Nothing is dropped, so the training path of the fast attention must give what
    # transformers' own attention gives, padding included.
    reference = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, **NOTHING_DROPPED).train()
    fast = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, **NOTHING_DROPPED).train()
    use_fast_cpu_dropout(fast)
    assert fast.config._attn_implementation != reference.config._attn_implementation
    assert torch.allclose(fast(**padded_tiny_batch()).logits, reference(**padded_tiny_batch()).logits, atol=1e-6)
