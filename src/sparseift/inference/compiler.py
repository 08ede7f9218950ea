"""``sparseift.inference.compile``: a trained sparse model -> a CPU inference module.

The model is traced with ``torch.fx``; on the graph, BatchNorm is folded into the conv
before it, a residual add is moved into the epilogue of the conv/linear that produces one
of its operands, and a ReLU into the layer it follows. Every Conv2d/Linear (and Hugging
Face ``Conv1D``) becomes an :class:`~sparseift.inference.layers.InferenceLayer` that runs
on the zero-skipping kernels, on our dense Winograd kernel (3x3 stride-1 convs) or on
PyTorch's dense ops (:func:`~sparseift.inference.layers.choose_path`).
Models that ``torch.fx`` cannot trace (data-dependent control flow, e.g. Hugging Face
GPT-2) keep their own forward and only have their layers replaced, without fusion.
"""

from __future__ import annotations

import copy
import operator
import time
from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from sparseift._model_io import ExampleInputs, call_model
from sparseift.inference import _ext
from sparseift.inference.blocked import BlockedModule, as_tensor, blocked_tiles
from sparseift.inference.layers import PATHS, InferenceLayer, LayerPlan, Path, choose_path, path_unsupported
from sparseift.inference.memory import pooled_buffers
from sparseift.inference.pooling import MaxPool, pool_for
from sparseift.transforms.layers import describe, dense_weight

__all__ = ["CompiledModel", "compile", "apply_masks", "max_relative_error", "MASK_SUFFIX"]

MASK_SUFFIX = "_mask"
"""The mask of parameter ``foo.weight`` is the bool buffer ``foo.weight_mask``."""

_ADDS = (operator.add, operator.iadd, torch.add)
_RELUS = (torch.relu, torch.relu_, F.relu)


class CompiledModel(nn.Module):
    """A compiled model: call it like the source model (no autograd).

    It runs with the caching buffer pool of :mod:`sparseift.inference.memory` installed.

    ``plans`` says, for every Conv2d/Linear of the source, the path it takes and what was
    fused into it; :meth:`summary` prints them as a table.
    """

    def __init__(self, module: nn.Module, traced: bool) -> None:
        super().__init__()
        self.module = module
        self.traced = traced

    @property
    def plans(self) -> tuple[LayerPlan, ...]:
        """One :class:`LayerPlan` per compiled layer, in graph (or registration) order."""
        return tuple(m.plan for m in self.module.modules() if isinstance(m, InferenceLayer))

    def summary(self) -> str:
        """A table of the layers: shape, density, path, fused ops and the reason for the path."""
        rows = [("layer", "kind", "weight", "density", "path", "fused", "reason")]
        for p in self.plans:
            shape = "x".join(map(str, p.weight_shape))
            rows.append((p.name, p.kind, shape, f"{p.density:.3f}", p.path, "+".join(p.fused) or "-", p.reason))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        sparse = sum(p.path == "sparse" for p in self.plans)
        mode = "fx graph, fused" if self.traced else "not traceable by torch.fx: layers replaced, no fusion"
        return "\n".join([*lines, f"{sparse}/{len(self.plans)} layers sparse ({mode})"])

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad(), pooled_buffers():
            return self.module(*args, **kwargs)


def apply_masks(model: nn.Module) -> None:
    """Zero every parameter ``foo`` where its bool buffer ``foo_mask`` is False (in place)."""
    with torch.no_grad():
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                mask = getattr(module, name + MASK_SUFFIX, None)
                if isinstance(mask, torch.Tensor):
                    param.mul_(mask.to(param.dtype))


def _fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv weight and bias with an eval-mode BatchNorm after it folded in (zeros stay zeros)."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * scale
    if bn.affine:
        scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
    b = bias if bias is not None else torch.zeros_like(scale)
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), b * scale + shift


def _foldable(module: nn.Module) -> bool:
    return isinstance(module, nn.BatchNorm2d) and module.track_running_stats and module.running_var is not None


class _Builder:
    """Turns source layers into :class:`InferenceLayer`s with one decision rule."""

    def __init__(self, kernels: bool, max_density: dict[str, float] | None) -> None:
        self.kernels = kernels
        self.max_density = max_density

    def build(self, name: str, module: nn.Module, bn: nn.BatchNorm2d | None = None) -> InferenceLayer:
        layer = describe(module)
        weight, bias = dense_weight(module)
        weight, bias = weight.detach().float(), None if bias is None else bias.detach().float()
        if bn is not None:
            weight, bias = _fold_batchnorm(weight, bias, bn)
        density = float((weight != 0).sum()) / max(1, weight.numel())
        path, reason = choose_path(layer, density, self.kernels, self.max_density)
        plan = LayerPlan(name, layer.kind, tuple(weight.shape), density, path, reason, ("batchnorm",) if bn else ())
        return InferenceLayer(plan, layer, weight, bias)


def _is_layer_node(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    return node.op == "call_module" and describe(modules[node.target]) is not None


def _fuse_graph(gm: fx.GraphModule, builder: _Builder) -> None:
    """Replace the layers of a traced model and fold BatchNorm / adds / ReLUs into them."""
    modules = dict(gm.named_modules())
    graph = gm.graph
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    fusible: dict[fx.Node, InferenceLayer] = {}
    for node in list(graph.nodes):
        if not _is_layer_node(node, modules):
            continue
        (user,) = node.users if len(node.users) == 1 else (None,)
        bn = None
        if calls[node.target] == 1 and user is not None and user.op == "call_module" and _foldable(modules[user.target]):
            bn = modules[user.target]
            user.replace_all_uses_with(node)
            graph.erase_node(user)
        layer = builder.build(node.target, modules[node.target], bn)
        parent, _, child = node.target.rpartition(".")
        setattr(gm.get_submodule(parent), child, layer)
        if calls[node.target] == 1:
            fusible[node] = layer
    for node in list(graph.nodes):
        if _is_add(node):
            _fuse_add(graph, node, fusible)
    for node in list(graph.nodes):
        if _is_relu(node, modules) and node.args[0] in fusible and len(node.args[0].users) == 1:
            fusible[node.args[0]].fuse("relu")
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    _replace_pools(gm)
    _fuse_pools(gm, fusible)
    _plan_blocked(gm)
    _plan_pool_conversions(gm)
    graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()


def _replace_pools(gm: fx.GraphModule) -> None:
    """Swap max pooling and global average pooling modules for ones that read blocked activations."""
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        pool = pool_for(gm.get_submodule(node.target))
        if pool is not None:
            parent, _, child = node.target.rpartition(".")
            setattr(gm.get_submodule(parent), child, pool)


def _fuse_pools(gm: fx.GraphModule, fusible: dict[fx.Node, InferenceLayer]) -> None:
    """Fold each max pool that is the only reader of a conv into that conv (a ResNet's stem):
    on the blocked sparse path the conv's epilogue pools and its output is never stored."""
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), MaxPool):
            continue
        conv = node.args[0]
        layer = fusible.get(conv)
        if layer is None or layer.layer.kind == "linear" or layer.pool is not None or len(conv.users) != 1:
            continue
        layer.fuse_pool(gm.get_submodule(node.target))
        node.replace_all_uses_with(conv)
        gm.graph.erase_node(node)


def _plan_blocked(gm: fx.GraphModule) -> None:
    """Let convs and pools hand batch-blocked activations to the modules that read them.

    Every :class:`~sparseift.inference.blocked.BlockedModule` that emits blocked activations
    gets ``blocked_halo`` = the widest halo its blocked readers need; every other user
    (flatten, a dense op, the graph output, ...) reads its output through one
    :func:`~sparseift.inference.blocked.as_tensor` node.
    """
    modules = dict(gm.named_modules())
    readers = {n: modules[n.target] for n in gm.graph.nodes if n.op == "call_module" and isinstance(modules[n.target], BlockedModule)}
    for node, module in readers.items():
        if not module.emits_blocked():
            continue
        halo = module.blocked_halo or (0, 0)
        for user in node.users:
            if user in readers and user.args[0] is node:
                need = readers[user].input_halo()
                halo = (max(halo[0], need[0]), max(halo[1], need[1]))
        module.blocked_halo = halo
        others = [user for user in node.users if user not in readers]
        if others:
            with gm.graph.inserting_after(node):
                plain = gm.graph.call_function(as_tensor, (node,))
            for user in others:
                user.replace_input_with(node, plain)


def _is_add(node: fx.Node) -> bool:
    return (
        node.op == "call_function"
        and node.target in _ADDS
        and len(node.args) == 2
        and not node.kwargs
        and all(isinstance(a, fx.Node) for a in node.args)
    )


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), nn.ReLU)
    if node.op == "call_function":
        return node.target in _RELUS and len(node.args) == 1
    return node.op == "call_method" and node.target in ("relu", "relu_") and len(node.args) == 1


def _fuse_add(graph: fx.Graph, add: fx.Node, fusible: dict[fx.Node, InferenceLayer]) -> None:
    """``layer(x) + other`` -> ``layer(x, residual=other)`` when the layer output has no other user."""
    for producer, other in ((add.args[0], add.args[1]), (add.args[1], add.args[0])):
        layer = fusible.get(producer)
        if layer is None or len(producer.users) != 1 or len(producer.args) != 1 or producer is other:
            continue
        with graph.inserting_before(add):
            fused = graph.call_module(producer.target, (producer.args[0], other))
        add.replace_all_uses_with(fused)
        graph.erase_node(add)
        graph.erase_node(producer)
        del fusible[producer]
        fusible[fused] = layer
        layer.fuse("add")
        return


def _replace_layers(model: nn.Module, builder: _Builder) -> None:
    """Swap every Conv2d/Linear/Conv1D of an untraceable model for an InferenceLayer."""
    for name, module in list(model.named_modules()):
        if name and describe(module) is not None:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, builder.build(name, module))


def compile(  # noqa: A001  (mirrors torch.compile)
    model: nn.Module,
    example_inputs: ExampleInputs | None = None,
    *,
    max_density: dict[str, float] | None = None,
    use_kernels: bool = True,
    tune: bool = False,
    tune_paths: tuple[Path, ...] = PATHS,
    rtol: float = 1e-4,
) -> CompiledModel:
    """Compile a trained sparse model for CPU inference (float32).

    Masks (``foo.weight_mask`` buffers) are applied first, so masked and squashed models
    give the same result. Each Conv2d/Linear runs on the sparse kernels when its density is
    at most ``max_density`` for its shape (default
    :data:`~sparseift.inference.layers.MAX_DENSITY`), else densely; see
    :meth:`CompiledModel.summary`.

    Args:
        model: the model; it is copied, never modified.
        example_inputs: if given, the compiled model is run on them and compared with the
            eager model; a maximum relative error above ``rtol`` raises ``RuntimeError``.
        max_density: per shape class (``"conv"``, ``"pointwise"``, ``"linear"``), the
            highest density that still takes the sparse path.
        use_kernels: ``False`` runs every layer densely (fusions still apply).
        tune: time every path of ``tune_paths`` that a layer supports on its input from
            ``example_inputs`` (required) and keep the fastest; the reason then gives the
            times. Inputs of the batch size you will serve give the most faithful choice.
        tune_paths: the paths ``tune`` chooses from (default all of
            :data:`~sparseift.inference.layers.PATHS`, incl. channels-last, Winograd and direct dense convs).
        rtol: tolerance of the check against eager, ``max|y - y_eager| / max|y_eager|``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if tune and example_inputs is None:
        raise ValueError("tune=True needs example_inputs to time each layer on")
    if max_density is not None:
        unknown = set(max_density) - {"conv", "pointwise", "linear"}
        if unknown:
            raise ValueError(f"max_density keys must be 'conv', 'pointwise' or 'linear'; got {sorted(unknown)}")
    source = copy.deepcopy(model).eval().float()
    apply_masks(source)
    builder = _Builder(use_kernels and _ext.kernels() is not None, max_density)
    try:
        graph_module: nn.Module = fx.symbolic_trace(source)
        traced = True
    except Exception:  # fx raises many types for untraceable Python; fall back to layer swaps
        graph_module, traced = source, False
    if traced:
        _fuse_graph(graph_module, builder)
    else:
        _replace_layers(graph_module, builder)
    compiled = CompiledModel(graph_module, traced).eval()
    if tune:
        unknown_paths = set(tune_paths) - set(PATHS)
        if unknown_paths:
            raise ValueError(f"tune_paths must be among {PATHS}; got {sorted(unknown_paths)}")
        _tune(compiled, example_inputs, tuple(tune_paths), builder.kernels)
    if example_inputs is not None:
        _check(model, compiled, example_inputs, rtol)
    return compiled


def _best_seconds(layer: InferenceLayer, args: tuple, repeats: int = 3) -> float:
    layer(*args)  # warm-up: builds the offsets of this input size
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        layer(*args)
        times.append(time.perf_counter() - start)
    return min(times)


NEAR_SPARSE = 1.5
"""A conv that emits blocked activations but was tuned to a dense path is tried on the sparse
path in the whole model when its sparse time was within this factor of the winner's: the
layer's own time misses what converting its plain output costs the blocked layers after it
(Sparse Wide ResNet-18 at s = 0.75, batch 64: the dense stem won by 30 ms and cost ~500 ms
of conversions and NCHW max pooling)."""


WHOLE_MODEL_ROUNDS = 3
"""Rounds of the whole-model comparison of :data:`NEAR_SPARSE`: each runs the model once with every
candidate layer in turn, so that the CPU's speed drifting (on a VM, by up to 2x within minutes)
hits all of them alike; the best time of each decides. (Two runs of one candidate, then two of
the other, gave whole-model gaps of +-5% that flipped from one compile to the next: Sparse Wide
ResNet-18, s = 0.75, batch 16, on a 2-core Sapphire Rapids.)"""


def _model_seconds(compiled: CompiledModel, example_inputs: ExampleInputs) -> float:
    """Wall time of one run of the whole model."""
    start = time.perf_counter()
    call_model(compiled, example_inputs)
    return time.perf_counter() - start


def _alternating_model_seconds(
    compiled: CompiledModel, example_inputs: ExampleInputs, name: str, candidates: tuple[InferenceLayer, ...]
) -> list[float]:
    """The whole model's best time with each of ``candidates`` as layer ``name``, measured in
    :data:`WHOLE_MODEL_ROUNDS` alternating rounds after a warm-up one (new layers build their
    offsets); the last candidate stays in place."""
    best = [float("inf")] * len(candidates)
    for round_ in range(WHOLE_MODEL_ROUNDS + 1):
        for i, layer in enumerate(candidates):
            _swap(compiled, name, layer)
            seconds = _model_seconds(compiled, example_inputs)
            if round_ > 0:
                best[i] = min(best[i], seconds)
    return best


def _tune(compiled: CompiledModel, example_inputs: ExampleInputs, paths: tuple[Path, ...], kernels: bool) -> None:
    """Give every layer the path of ``paths`` (and, on the blocked sparse kernel, the task width of
    :func:`~sparseift.inference.blocked.blocked_tiles`) that runs fastest on its input from
    ``example_inputs``, then settle the convs whose output layout matters in the whole model
    (:data:`NEAR_SPARSE`)."""
    inputs: dict[str, tuple] = {}

    def capture(module: InferenceLayer, args: tuple) -> None:
        inputs.setdefault(module.plan.name, args)

    layers = {name: m for name, m in compiled.module.named_modules() if isinstance(m, InferenceLayer)}
    handles = [m.register_forward_pre_hook(capture) for m in layers.values()]
    try:
        call_model(compiled, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    near: dict[str, int | None] = {}
    with torch.no_grad(), pooled_buffers():  # timed as the compiled model runs them
        for name, layer in layers.items():
            args = inputs.get(layer.plan.name)
            if args is None:
                continue
            candidates = [p for p in paths if path_unsupported(layer.layer, p, kernels) is None]
            variants = [(p, tile) for p in candidates for tile in _tiles(layer, p, args[0])]
            if len(variants) < 2:
                continue
            timed = {
                (p, tile): _best_seconds(layer if (p, tile) == (layer.plan.path, layer.plan.tile) else layer.with_path(p, "", tile), args)
                for p, tile in variants
            }
            winner = min(timed, key=timed.get)
            reason = "measured " + " vs ".join(f"{_label(*v)} {1e3 * t:.2f} ms" for v, t in timed.items())
            _swap(compiled, name, layer.with_path(winner[0], reason, winner[1]))
            sparse = {v: t for v, t in timed.items() if v[0] == "sparse"}
            if winner[0] != "sparse" and sparse and min(sparse.values()) <= NEAR_SPARSE * timed[winner] and _emits_blocked(layer, args[0]):
                near[name] = min(sparse, key=sparse.get)[1]
    for name, tile in near.items():
        dense = compiled.module.get_submodule(name)
        candidates = (dense, dense.with_path("sparse", "", tile))
        before, after = _alternating_model_seconds(compiled, example_inputs, name, candidates)
        whole = f"; whole model {1e3 * after:.0f} ms with sparse vs {1e3 * before:.0f} ms with {dense.plan.path}"
        best = ("sparse", tile) if after < before else (dense.plan.path, dense.plan.tile)
        _swap(compiled, name, dense.with_path(best[0], dense.plan.reason + whole, best[1]))


def _tiles(layer: InferenceLayer, path: Path, x: Any) -> tuple[int | None, ...]:
    """The blocked kernel's task widths to time for ``layer`` on ``path`` with input ``x``
    (:func:`~sparseift.inference.blocked.blocked_tiles` where it runs that kernel, else only the default)."""
    ext = _ext.kernels()
    if path != "sparse" or ext is None:
        return (None,)
    sparse = layer if layer.plan.path == "sparse" else layer.with_path("sparse", "")
    return blocked_tiles(ext, sparse.output_shape(x)[3]) if sparse.runs_blocked(x) else (None,)


def _label(path: Path, tile: int | None) -> str:
    return path if tile is None else f"{path} (tile {tile})"


def _emits_blocked(layer: InferenceLayer, x: Any) -> bool:
    """Whether ``layer`` on the sparse path hands blocked activations on for input ``x``."""
    ext = _ext.kernels()
    return layer.blocked_halo is not None and layer.emits_blocked() and ext is not None and x.dim() == 4 and x.shape[0] >= ext.vector_width()


def _swap(compiled: CompiledModel, name: str, layer: InferenceLayer) -> None:
    parent, _, child = name.rpartition(".")
    setattr(compiled.module.get_submodule(parent), child, layer)
    if compiled.traced:
        _plan_pool_conversions(compiled.module)


def _plan_pool_conversions(gm: fx.GraphModule) -> None:
    """Let a max pool convert a plain input's output to the blocked layout where one of its readers
    is a sparse conv that reads that layout (:attr:`~sparseift.inference.pooling.MaxPool.convert_plain`);
    dense readers (Winograd, oneDNN) run faster on their own layouts."""
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        pool = modules.get(node.target) if node.op == "call_module" else None
        pool = pool.pool if isinstance(pool, InferenceLayer) else pool
        if isinstance(pool, MaxPool):
            readers = [modules.get(user.target) for user in node.users if user.op == "call_module"]
            pool.convert_plain = any(isinstance(r, InferenceLayer) and r.reads_blocked() for r in readers)


def max_relative_error(actual: Any, expected: Any) -> float:
    """``max|a - e| / max|e|`` over the tensors of two outputs of the same structure."""
    pairs = _tensor_pairs(actual, expected)
    errors = [float((a.float() - e.float()).abs().max() / e.float().abs().max().clamp_min(1e-30)) for a, e in pairs]
    return max(errors, default=0.0)


def _tensor_pairs(actual: Any, expected: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(expected, torch.Tensor):
        return [(actual, expected)]
    if isinstance(expected, dict) or hasattr(expected, "items"):
        return [p for k in expected.keys() for p in _tensor_pairs(actual[k], expected[k])]
    if isinstance(expected, (tuple, list)):
        return [p for a, e in zip(actual, expected) for p in _tensor_pairs(a, e)]
    return []


def _check(model: nn.Module, compiled: CompiledModel, example_inputs: ExampleInputs, rtol: float) -> None:
    eager = copy.deepcopy(model).eval()
    apply_masks(eager)
    with torch.no_grad():
        expected = call_model(eager, example_inputs)
    error = max_relative_error(call_model(compiled, example_inputs), expected)
    if not error <= rtol:
        raise RuntimeError(f"compiled model differs from eager: max relative error {error:.3g} > rtol={rtol:g}")

