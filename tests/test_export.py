"""Extended models leave Python through torch.export with dynamic batch size and length; the TorchScript
tracer (legacy ONNX export), which would freeze the example's path into the graph, is refused."""

import io

import pytest
import torch

from hf_adapter_ext import NeuralAdapterConfig, get_adapter_model

from .conftest import NEW_LABELS, tiny_source


class LogitsOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def extended(tokenizer, adapter="bilstm", head="crf"):
    model = get_adapter_model(tiny_source("bert", tokenizer.vocab_size),
                              NeuralAdapterConfig(new_labels=NEW_LABELS, adapter=adapter, head=head)).eval()
    # Non-zero adapter output (its projection starts at zero, which would hide mistakes); the LSTM keeps its
    # default initialisation: recurrent weights of std 1 are chaotic, and float32 rounding alone then grows
    # along the sequence until any two LSTM kernels disagree.
    with torch.no_grad():
        for p in [*model.classifier.parameters(), *(model.adapter.proj.parameters() if model.adapter else [])]:
            p.normal_(0, 0.5, generator=torch.Generator().manual_seed(p.numel()))
        if model.crf is not None:
            model.crf.transitions.normal_(0, 2, generator=torch.Generator().manual_seed(0))
    return LogitsOnly(model)


def inputs(batch, length, vocab, seed, left_padding=False):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, length // 2 :] = 0
    if left_padding:
        mask = mask.flip(1)
    return ids, mask


@pytest.mark.parametrize("adapter,head", [("bilstm", "crf"), ("bilstm", "linear"), ("mlp", "crf")])
def test_exported_model_matches_eager_on_other_batch_sizes_and_lengths(tokenizer, adapter, head):
    model = extended(tokenizer, adapter, head)
    example = inputs(2, 13, tokenizer.vocab_size, 0)  # a length unlike the label count (9): no shape merging
    batch, length = torch.export.Dim("batch", max=1024), torch.export.Dim("length", max=512)
    program = torch.export.export(model, example, dynamic_shapes=({0: batch, 1: length}, {0: batch, 1: length}))
    paths = set()
    for shape, seed, left in (((3, 17), 1, False), ((1, 4), 2, False), ((5, 29), 3, True), ((4, 40), 4, False)):
        ids, mask = inputs(*shape, tokenizer.vocab_size, seed, left)
        exported, eager = program.module()(ids, mask), model(ids, mask)
        torch.testing.assert_close(exported, eager, atol=1e-4, rtol=1e-4)
        real = mask.bool()
        assert torch.equal(exported.argmax(-1)[real], eager.argmax(-1)[real])
        paths.add(tuple(eager.argmax(-1)[real].tolist()))
    assert len(paths) == 4, "different inputs must decode to different paths (no constant path)"


@pytest.mark.parametrize("adapter,head", [("bilstm", "linear"), ("none", "crf")])
def test_legacy_onnx_export_is_refused_with_a_pointer_to_torch_export(tokenizer, adapter, head):
    model = extended(tokenizer, adapter, head)
    with pytest.raises(RuntimeError, match=r"torch\.export\.export"):
        torch.onnx.export(model, inputs(2, 13, tokenizer.vocab_size, 0), io.BytesIO(), dynamo=False)


@pytest.mark.parametrize("adapter,head", [("bilstm", "crf"), ("mlp", "linear")])
def test_onnx_export_matches_eager_on_three_other_inputs(tmp_path, tokenizer, adapter, head):
    ort = pytest.importorskip("onnxruntime", reason="running the ONNX graph needs onnxruntime")
    pytest.importorskip("onnxscript", reason="torch.onnx's dynamo exporter needs onnxscript")
    model = extended(tokenizer, adapter, head)
    batch, length = torch.export.Dim("batch", max=1024), torch.export.Dim("length", max=512)
    program = torch.onnx.export(model, inputs(2, 13, tokenizer.vocab_size, 0), dynamo=True,
                                dynamic_shapes=({0: batch, 1: length}, {0: batch, 1: length}))
    program.save(str(tmp_path / "model.onnx"))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    names = [i.name for i in session.get_inputs()]
    for shape, seed, left in (((3, 17), 1, False), ((1, 4), 2, False), ((5, 29), 3, True)):
        ids, mask = inputs(*shape, tokenizer.vocab_size, seed, left)
        got = torch.from_numpy(session.run(None, {names[0]: ids.numpy(), names[1]: mask.numpy()})[0])
        eager = model(ids, mask).detach()
        torch.testing.assert_close(got, eager, atol=1e-4, rtol=1e-4)
        assert torch.equal(got.argmax(-1)[mask.bool()], eager.argmax(-1)[mask.bool()])


def test_nan_in_loaded_weights_is_an_error_not_a_clean_path(tokenizer):
    model = extended(tokenizer).model
    ids, mask = inputs(2, 7, tokenizer.vocab_size, 0)
    with torch.no_grad():
        model.classifier.weight[3, 0] = float("nan")
        with pytest.raises(ValueError, match="NaN"):
            model(input_ids=ids, attention_mask=mask)


def test_nan_inputs_embeds_are_an_error_not_a_clean_path(tokenizer):
    model = extended(tokenizer).model
    embeds = torch.randn(1, 6, 32)
    embeds[0, 2, 5] = float("nan")
    with torch.no_grad(), pytest.raises(ValueError, match="NaN"):
        model(inputs_embeds=embeds)
