"""An int8 output layer for decoding on the CPU (opt-in: ``int8=True``, ``--int8``, the
API's ``"int8": true``).

As CTranslate2's and Marian's int8 modes do for every matrix, the output layer (hidden x
vocabulary: 4.8 of the 6.1 MB an en-fr RNN decoder step reads at batch 1, and about a
third of a greedy batch's time at batch 64) is stored as 8-bit integers with one scale
per target word (symmetric), and each step quantises the readout on the fly (one scale a
row, so that a sentence's result does not depend on its batch: :class:`Int8Output`) and
multiplies in int8 with 32-bit sums: fbgemm's dynamic product, whose ``reduce_range``
keeps x86's int8 instructions from saturating.

Only the output layer: the attention, the encoder and the decoder's recurrence stay
fp32, so attention weights are computed exactly as without int8 for the same words; what
moves is every log-probability, a little, and through them sometimes a word. It pays for
the RNN models (their output layer is most of a step's weights); for the Transformer,
whose readout needs a scale of its own per row, it is about even (README, Speed). With a
shortlist, the int8 layer scores the whole vocabulary and the shortlist's columns are
taken from it: correct, but without the shortlist's saving. Quantising the encoder's GRU
as well (PyTorch's dynamic int8 GRU) was measured and left out: 5-6% more speed at batch
64, and 25 more of 1,280 test sentences translated differently.

Built on PyTorch's quantised tensors and fbgemm's ``quantized::linear_dynamic``, which
PyTorch 2.13 marks deprecated in favour of torchao; the project pins torch 2.13.0, where
it works, and its warning is silenced here only. CPU only: a model on a GPU is refused
with a message saying so.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from attnviz.model.factory import NMTModel
from attnviz.model.seq2seq import Seq2Seq


def check_int8_device(device: torch.device) -> None:
    """ValueError unless ``device`` (a model's) is the CPU: fbgemm's int8 products run
    there only."""
    if device.type != "cpu":
        raise ValueError(
            f"int8 decoding runs on the CPU only (fbgemm's int8 products), and this model is "
            f"on {device}: decode without int8, or load the model on the CPU"
        )


class Int8Output(nn.Module):
    """An output layer with int8 weights: readouts (rows, in) -> logits (rows, vocab).

    fbgemm's dynamic product quantises its whole input with one scale and zero point,
    taken from the input's minimum and maximum: a row's result would depend on the rows
    beside it (a sentence's translation on its batch, a request's on the requests
    micro-batched with it). So each row is first divided by its own largest magnitude, and
    one anchor row ``[1, -1, 0, ...]`` is added: every input then spans exactly [-1, 1],
    the quantisation is the same whatever the batch, and each row's largest value uses
    the whole range (127 levels across [-1, 1]: ``reduce_range`` takes 7 bits; CTranslate2
    scales each row of its int8 inputs too). The integer product is exact; the row's scale
    multiplies its logits back. ``bounded`` inputs (an RNN's readout, a tanh) already lie
    within [-1, 1]: the anchor alone fixes their quantisation, and the division and
    multiplication are skipped (the bias then goes inside the product); a row of small
    values then uses fewer levels (measured: the additive model's 2,500 greedy test
    translations are all unchanged).
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, bounded: bool) -> None:
        super().__init__()
        self.bounded = bounded
        # one symmetric scale per output row (target word)
        scales = (weight.abs().amax(1) / 127.0).clamp_min(1e-12).double()
        zero_points = torch.zeros(weight.size(0), dtype=torch.long)
        with warnings.catch_warnings():
            # "quantized tensor creation functions ... are deprecated" (module docstring)
            warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
            qweight = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
            inner_bias = bias.detach().clone() if bounded and bias is not None else None
            self.packed = torch.ops.quantized.linear_prepack(qweight, inner_bias)
        self.bias = None if bounded or bias is None else bias.detach().clone()  # (vocab,)
        anchor = torch.zeros(1, weight.size(1), dtype=weight.dtype)
        anchor[0, 0], anchor[0, -1] = 1.0, -1.0
        self.anchor = anchor  # (1, in)

    def forward(self, x: Tensor) -> Tensor:
        if self.bounded:
            return torch.ops.quantized.linear_dynamic(
                torch.cat([x, self.anchor]), self.packed, True
            )[:-1]  # (rows, vocab)
        scale = x.abs().amax(1, keepdim=True).clamp_min_(1e-30)  # (rows, 1)
        rows = torch.cat([x / scale, self.anchor])  # (rows + 1, in), all within [-1, 1]
        # reduce_range: 7-bit inputs, so x86's int8 instructions cannot saturate
        logits = torch.ops.quantized.linear_dynamic(rows, self.packed, True)[:-1]
        if self.bias is None:
            return logits * scale  # (rows, vocab)
        return torch.addcmul(self.bias, logits, scale)


def output_layer(model: NMTModel) -> tuple[nn.Linear, bool]:
    """``model``'s output layer, and whether its input is bounded: an RNN decoder's readout
    is a tanh; the Transformer's is a layer norm's output."""
    if isinstance(model, Seq2Seq):
        return model.decoder.output, True
    return model.output, False


def int8_output(model: NMTModel) -> nn.Module:
    """An int8 copy of ``model``'s output layer (:class:`Int8Output`, bias included). The
    model itself is untouched."""
    output, bounded = output_layer(model)
    check_int8_device(output.weight.device)
    with torch.inference_mode():
        return Int8Output(output.weight.detach(), output.bias, bounded=bounded).eval()
