"""Sparse Wide: every hidden width of a network times ``k_sw = sqrt(1/(1-s))`` (table 1, A.1).

Sparse Wide changes layer shapes, so it rewrites the whole network at once. The engine
below scales every hidden width by any factor ``k``: Sparse Wide calls it with
``k = k_sw(s)`` (:func:`widen`), and :func:`widen_model` exposes it as a plain, dense width
multiplier (a model zoo's ``width_multiplier`` for models it does not define itself).
It works on any model built from the layer types below, without per-model code, by running
the model once on example inputs and resizing each layer just before it runs:

* a layer's **output** width ``D`` becomes ``W(D) = q * round_half_up(k * D / q)`` (at
  least ``q``), the same function everywhere, so the two sides of a residual add stay equal;
* a layer's **input** width is read off the tensor that actually reaches it, so
  flatten -> Linear, concatenations and the network's own input channels come out right;
* the network's input channels, vocabulary and positions (``num_embeddings``) and the
  output width of the last layer (classes, vocabulary) never change;
* ``q`` is the least common multiple of every attention head count, conv group count
  and GroupNorm group count, so every widened width stays divisible by them. GPT-3 Small
  (12 heads, 768/3072) gives 1092/4344 at s = 0.5 and 1536/6144 at s = 0.75, the widths
  of the paper (section 8).

Layer types: ``nn.Linear``, ``nn.Conv2d`` (any stride, padding, dilation, groups),
Hugging Face ``Conv1D``, BatchNorm, LayerNorm, GroupNorm, ``nn.Embedding`` and any
parameter-free module. Multi-head attention modules (any module with a head count attribute
such as ``num_heads`` and a head size attribute such as ``head_dim``: GPT-2's, timm's,
BERT-style) keep their head count and widen each head; their width, head size and
``head_dim ** -0.5`` scale attributes and fused q/k/v projections follow.

Depthwise convs (A.1.1): the paper widens only their outputs, by ``1/(1-s)``, which
cannot meet the widened 1x1 convs around them channel for channel. sparseift keeps a
depthwise conv depthwise at the widened channel count ``W(C)``; its FLOPs then grow only
by ``W(C)/C``, and it is made sparse at ``s_dw = 1 - C/W(C)`` so that it, like every other
layer, keeps the dense layer's FLOPs.

Resized parameters get their layer type's default initialisation (``reset_parameters``);
tied parameters (GPT-2's LM head and token embedding) stay tied. Apply your model's own
initialisation scheme after the transform.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sparseift._checks import check_positive_real
from sparseift._model_io import ExampleInputs, call_model, execution_order, first_tensor, inspecting
from sparseift.transforms import dims
from sparseift.transforms.layers import describe, is_hf_conv1d

__all__ = [
    "WidthChange",
    "width_multiple",
    "scale_widths",
    "widen",
    "widen_model",
    "HEAD_COUNT_ATTRS",
    "HEAD_SIZE_ATTRS",
]

HEAD_COUNT_ATTRS = ("num_heads", "num_attention_heads", "n_head")
HEAD_SIZE_ATTRS = ("head_dim", "attention_head_size", "head_size", "dim_head_qk", "dim_head_v")
ATTENTION_WIDTH_ATTRS = ("embed_dim", "split_size", "attn_dim", "all_head_size", "inner_dim", "dim_out_qk", "dim_out_v")
PER_HEAD_ATTR = "dim_head"
"""A child of an attention module with ``dim_head`` equal to the head size holds per-head
parameters (timm's relative position embedding of BotNet): their last dimension follows."""
SCALE_ATTRS = ("scale", "scaling")
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class WidthChange:
    """One module's output width before and after widening."""

    name: str
    old: int
    new: int
    exact: float

    @property
    def factor(self) -> float:
        """The realised width factor ``new / old``."""
        return self.new / self.old


def _int_attr(module: nn.Module, names: tuple[str, ...]) -> tuple[str, int] | None:
    for name in names:
        value = getattr(module, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return name, value
    return None


def _attention_shape(module: nn.Module) -> tuple[int, int] | None:
    """``(num_heads, head_size)`` of a multi-head attention module, else ``None``."""
    heads, size = _int_attr(module, HEAD_COUNT_ATTRS), _int_attr(module, HEAD_SIZE_ATTRS)
    if heads is None or size is None:
        return None
    return heads[1], size[1]


def width_multiple(model: nn.Module) -> int:
    """``q``: the lcm of attention head counts, conv groups (not depthwise), GroupNorm groups."""
    q = 1
    for module in model.modules():
        shape = _attention_shape(module)
        if shape is not None:
            q = math.lcm(q, shape[0])
        layer = describe(module)
        if layer is not None and layer.groups > 1 and not layer.is_depthwise:
            q = math.lcm(q, layer.groups)
        if isinstance(module, nn.GroupNorm):
            q = math.lcm(q, module.num_groups)
    return q


class _Widener:
    """Resizes each module of a (copied) model just before it first runs."""

    def __init__(self, model: nn.Module, factor: float, keep_output: set[str], multiple: int) -> None:
        self.model = model
        self.factor = factor
        self.multiple = multiple
        self.names = {id(m): name for name, m in model.named_modules(remove_duplicate=False)}
        self.keep_output = keep_output
        self.overrides: dict[int, int] = {}
        self.replaced: dict[int, nn.Parameter] = {}
        self.done: set[int] = set()
        self.changes: dict[str, WidthChange] = {}
        self.per_head: set[int] = set()

    # -- widths ---------------------------------------------------------------------------
    def width(self, old: int) -> dims.IntegerSize:
        return dims.integer_size(self.factor * old, minimum=self.multiple, multiple=self.multiple)

    def out_width(self, module: nn.Module, old: int) -> int:
        name = self.names[id(module)]
        if id(module) in self.overrides:
            new, exact = self.overrides[id(module)], float(self.overrides[id(module)])
        elif name in self.keep_output:
            new, exact = old, float(old)
        else:
            size = self.width(old)
            new, exact = size.value, size.exact
        self.changes[name] = WidthChange(name, old, new, exact)
        return new

    # -- parameter surgery ----------------------------------------------------------------
    def _resize(self, module: nn.Module, shapes: dict[str, tuple[int, ...]]) -> None:
        """Give ``module`` new, default-initialised tensors of ``shapes``; keep ties.

        A module whose tensors already have these shapes keeps them (and its values).
        """
        current = {name: getattr(module, name, None) for name in shapes}
        if all(t is None or tuple(t.shape) == tuple(shapes[n]) for n, t in current.items()):
            return
        tied: dict[str, torch.Tensor] = {}
        for name, shape in shapes.items():
            old = getattr(module, name, None)
            if old is None:
                continue
            if name in module._parameters:
                previous = self.replaced.get(id(old))
                if previous is not None and tuple(previous.shape) == tuple(shape):
                    module._parameters[name] = previous
                    tied[name] = previous.detach().clone()
                    continue
                new = nn.Parameter(old.new_empty(shape), requires_grad=old.requires_grad)
                self.replaced[id(old)] = new
                module._parameters[name] = new
            else:
                module._buffers[name] = old.new_zeros(shape)
        if is_hf_conv1d(module):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif hasattr(module, "reset_parameters"):
            module.reset_parameters()
        with torch.no_grad():
            for name, value in tied.items():
                getattr(module, name).copy_(value)

    # -- per-type rules --------------------------------------------------------------------
    def _linear(self, module: nn.Module, x: torch.Tensor) -> None:
        d_in = x.shape[-1]
        if is_hf_conv1d(module):
            d_out = self.out_width(module, module.nf)
            module.nf = d_out
            self._resize(module, {"weight": (d_in, d_out), "bias": (d_out,)})
            return
        d_out = self.out_width(module, module.out_features)
        module.in_features, module.out_features = d_in, d_out
        self._resize(module, {"weight": (d_out, d_in), "bias": (d_out,)})

    def _conv(self, module: nn.Conv2d, x: torch.Tensor) -> None:
        c_in = x.shape[1]
        layer = describe(module)
        if layer.is_depthwise:
            groups, c_out = c_in, c_in * (module.out_channels // module.groups)
            self.changes[self.names[id(module)]] = WidthChange(
                self.names[id(module)], module.out_channels, c_out, float(c_out)
            )
        else:
            groups, c_out = module.groups, self.out_width(module, module.out_channels)
            if c_in % groups or c_out % groups:
                raise ValueError(
                    f"Sparse Wide cannot rewrite {self.names[id(module)]!r}: widths {c_in}->{c_out} "
                    f"are not divisible by its {groups} groups"
                )
        module.in_channels, module.out_channels, module.groups = c_in, c_out, groups
        kh, kw = module.kernel_size
        self._resize(module, {"weight": (c_out, c_in // groups, kh, kw), "bias": (c_out,)})

    def _norm(self, module: nn.Module, x: torch.Tensor) -> None:
        if isinstance(module, nn.LayerNorm):
            shape = tuple(x.shape[-len(module.normalized_shape) :])
            module.normalized_shape = shape
            self._resize(module, {"weight": shape, "bias": shape})
            return
        channels = x.shape[1]
        if isinstance(module, nn.GroupNorm):
            module.num_channels = channels
        else:
            module.num_features = channels
        shapes = {name: (channels,) for name in ("weight", "bias", "running_mean", "running_var")}
        self._resize(module, shapes)

    def _embedding(self, module: nn.Embedding) -> None:
        dim = self.out_width(module, module.embedding_dim)
        module.embedding_dim = dim
        self._resize(module, {"weight": (module.num_embeddings, dim)})

    def _attention(self, module: nn.Module, heads: int, head_size: int) -> None:
        old = heads * head_size
        new = self.width(old).value
        new_head = new // heads
        for names, before, after in (
            (ATTENTION_WIDTH_ATTRS, old, new),
            (HEAD_SIZE_ATTRS, head_size, new_head),
        ):
            for name in names:
                value = getattr(module, name, None)
                if isinstance(value, int) and not isinstance(value, bool) and value == before:
                    setattr(module, name, after)
        for name in SCALE_ATTRS:
            value = getattr(module, name, None)
            if isinstance(value, float) and math.isclose(value, head_size**-0.5):
                setattr(module, name, new_head**-0.5)
        for child in module.children():
            layer = describe(child)
            if layer is not None and layer.out_channels in (2 * old, 3 * old):
                self.overrides[id(child)] = layer.out_channels // old * new
            if getattr(child, PER_HEAD_ATTR, None) == head_size:
                self._per_head(child, head_size, new_head)

    def _per_head(self, module: nn.Module, head_size: int, new_head: int) -> None:
        """Resize the last dimension of a per-head module's own parameters to the new head size."""
        setattr(module, PER_HEAD_ATTR, new_head)
        for name in SCALE_ATTRS:
            value = getattr(module, name, None)
            if isinstance(value, float) and math.isclose(value, head_size**-0.5):
                setattr(module, name, new_head**-0.5)
        shapes = {
            name: (*p.shape[:-1], new_head)
            for name, p in module._parameters.items()
            if p is not None and p.shape[-1] == head_size
        }
        self._resize(module, shapes)
        self.per_head.add(id(module))

    # -- driver -----------------------------------------------------------------------------
    def hook(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        if id(module) in self.done:
            return
        self.done.add(id(module))
        x = first_tensor(args, kwargs)
        layer = describe(module)
        if layer is not None:
            if layer.kind == "conv2d":
                self._conv(module, x)
            else:
                self._linear(module, x)
        elif isinstance(module, _NORMS):
            self._norm(module, x)
        elif isinstance(module, nn.Embedding):
            self._embedding(module)

    def check_supported(self) -> None:
        for name, module in self.model.named_modules():
            own = [n for n, p in module._parameters.items() if p is not None]
            supported = (
                describe(module) is not None or isinstance(module, (*_NORMS, nn.Embedding)) or id(module) in self.per_head
            )
            if own and not supported:
                raise TypeError(
                    f"Sparse Wide cannot rewrite module {name or '<root>'!r} ({type(module).__name__}): "
                    f"it holds parameters {own} directly and no width rule knows their layout "
                    "(build it from nn.Linear/nn.Conv2d/norm layers, or use a layer-wise family)"
                )
            if isinstance(module, nn.modules.conv._ConvNd) and not isinstance(module, nn.Conv2d):
                raise TypeError(
                    f"Sparse Wide cannot rewrite module {name!r} ({type(module).__name__}): "
                    "only nn.Conv2d convolutions are supported"
                )

    def run(self, example_inputs: ExampleInputs) -> None:
        for module in self.model.modules():
            shape = _attention_shape(module)
            if shape is not None:
                self._attention(module, *shape)
        self.check_supported()
        handles = [m.register_forward_pre_hook(self.hook, with_kwargs=True) for m in self.model.modules()]
        try:
            with inspecting(self.model):
                try:
                    call_model(self.model, example_inputs)
                except RuntimeError as error:
                    raise RuntimeError(
                        "Sparse Wide could not run the widened model: a module probably uses a hard-coded "
                        f"width in its forward ({error})"
                    ) from error
        finally:
            for handle in handles:
                handle.remove()


def _check_factor(factor: float) -> float:
    return check_positive_real("factor", factor)


def scale_widths(
    model: nn.Module, factor: float, example_inputs: ExampleInputs, keep_output: set[str]
) -> dict[str, WidthChange]:
    """Scale every hidden width of ``model`` in place by ``factor``; returns the width changes.

    The engine of this module: each output width ``D`` becomes
    ``q * round_half_up(factor * D / q)`` (see the module docstring). ``keep_output`` names
    the modules whose output width stays (the network's last layer).
    """
    widener = _Widener(model, _check_factor(factor), keep_output, width_multiple(model))
    widener.run(example_inputs)
    return widener.changes


def widen(
    model: nn.Module, sparsity: float, example_inputs: ExampleInputs, keep_output: set[str]
) -> dict[str, WidthChange]:
    """Widen ``model`` in place for Sparse Wide at ``sparsity``; returns the width changes.

    :func:`scale_widths` with ``factor = k_sw(s) = sqrt(1/(1-s))`` (table 1).
    ``keep_output`` names the modules whose output width stays (the network's last layer).
    """
    return scale_widths(model, dims.k_sw(sparsity), example_inputs, keep_output)


def widen_model(model: nn.Module, factor: float, example_inputs: ExampleInputs) -> nn.Module:
    """A dense copy of ``model`` with every hidden width times ``factor`` (a width multiplier).

    The same engine and rounding as Sparse Wide (``factor = k_sw(s)`` gives the widths of
    ``transform(model, "wide", s)``), without any sparsity: the network's input channels,
    vocabulary and positions and its last layer's output width (classes, vocabulary) stay.
    ``factor < 1`` narrows. ``model`` is not modified. Resized layers get their layer type's
    default initialisation: re-apply the model's own initialisation scheme afterwards.

    Args:
        model: any ``nn.Module`` that :func:`widen` supports.
        factor: the width multiplier ``k > 0``.
        example_inputs: inputs the model runs on once (see :data:`ExampleInputs`).
    """
    factor = _check_factor(factor)
    new = copy.deepcopy(model)
    layers = execution_order(new, example_inputs, lambda m: describe(m) is not None)
    scale_widths(new, factor, example_inputs, keep_output=set(layers[-1:]))
    return new
