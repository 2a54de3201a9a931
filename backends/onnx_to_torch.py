"""A float ONNX CNN as a ``torch.nn.Module`` (the PyTorch backend's model maker).

Used by ``benchmarks/kws_pytorch.py`` and the PyTorch backend's tests to turn
the keyword-spotting ONNX model (made by ``benchmarks/kws_onnx.py``) into a
TorchScript file. It knows the handful of ONNX operators plain CNNs are made
of (:data:`OPS`); any other operator, or an attribute it does not implement,
is a ``ValueError`` naming it, never a silently different network.

Why not ``onnx2torch``: it requires ``torchvision``, and pip then replaces the
CPU build of torch with a CUDA build of another release (several GB); PyPI's
torchvision does not import beside the CPU build of torch 2.13.0 (``operator
torchvision::nms does not exist``). This module needs only ``torch`` and ``onnx``.

Weight-only quantised ONNX (constant ``DequantizeLinear`` on int8 weights, as
tf2onnx writes for ``kws_ref_model_float32.tflite``) is folded at conversion:
the module holds the float32 weights ``(q - zero_point) * scale``, computed in
float32 as ONNX Runtime does.
"""

from __future__ import annotations

import numpy as np

#: ONNX operators this converter implements
OPS = ("Add", "AveragePool", "BatchNormalization", "Clip", "Conv", "DequantizeLinear", "Flatten", "Gemm",
       "GlobalAveragePool", "Identity", "MatMul", "MaxPool", "Mul", "Relu", "Reshape", "Softmax", "Transpose")


def load_onnx(path):
    """(graph, initializers as NumPy arrays) of an ONNX file."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return model.graph, {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def convert(path):
    """The ONNX model at ``path`` as an ``nn.Module`` taking and returning float32 tensors."""
    import onnx

    graph, consts = load_onnx(path)
    inputs = [i.name for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise ValueError(f"{path}: {len(inputs)} graph inputs; this converter takes models with one")
    steps = []
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type not in OPS and node.op_type != "Constant":
            raise ValueError(f"{path}: ONNX operator {node.op_type} (node {node.name!r}) is not supported; "
                             f"this converter knows {', '.join(OPS)}")
        if node.op_type == "Constant":
            consts[node.output[0]] = onnx.numpy_helper.to_array(attrs["value"])
        elif node.op_type == "DequantizeLinear" and all(n in consts for n in node.input):
            consts[node.output[0]] = _dequantize(consts, node, attrs)
        else:
            steps.append((node.op_type, list(node.input), node.output[0], attrs))
    return _module(inputs[0], graph.output[0].name, steps, consts)


def _dequantize(consts, node, attrs):
    q = consts[node.input[0]]
    scale = consts[node.input[1]].astype(np.float32)
    zero = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros_like(scale, q.dtype)
    if scale.ndim:  # per-axis: scale and zero point along ``axis``
        shape = [1] * q.ndim
        shape[attrs.get("axis", 1)] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((q.astype(np.int32) - zero.astype(np.int32)).astype(np.float32) * scale).astype(np.float32)


def _module(input_name, output_name, steps, consts):
    import torch
    import torch.nn.functional as F

    class OnnxGraph(torch.nn.Module):
        """The ONNX graph's nodes run in order; constants are buffers (saved with the module)."""

        def __init__(self):
            super().__init__()
            used = {name for _, ins, _, _ in steps for name in ins}
            self._names = {}
            for k, name in enumerate(sorted(n for n in consts if n in used)):
                value = consts[name]
                if value.dtype.kind == "f":
                    self.register_buffer(f"c{k}", torch.from_numpy(np.array(value, np.float32)))
                    self._names[name] = f"c{k}"
            self._ints = {n: [int(v) for v in np.asarray(consts[n]).reshape(-1)] for n in used
                          if n in consts and consts[n].dtype.kind in "iu"}

        def _value(self, values, name):
            if name in values:
                return values[name]
            return getattr(self, self._names[name])

        def forward(self, x):
            values = {input_name: x}
            for op, ins, out, attrs in steps:
                args = [self._value(values, n) if n and n not in self._ints else self._ints.get(n) for n in ins]
                values[out] = _apply(F, torch, op, args, attrs)
            return values[output_name]

    return OnnxGraph().eval()


def _pads(attrs, spatial: int):
    pads = list(attrs.get("pads", [0] * 2 * spatial))
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError(f"auto_pad={attrs['auto_pad']!r} is not supported (tf2onnx writes explicit pads)")
    begin, end = pads[:spatial], pads[spatial:]
    if begin == end:
        return None, begin
    # F.pad takes (last dim begin, last dim end, previous dim begin, ...)
    flat = []
    for b, e in zip(reversed(begin), reversed(end)):
        flat += [b, e]
    return flat, [0] * spatial


def _apply(F, torch, op, args, attrs):
    if op == "Conv":
        x, w = args[0], args[1]
        bias = args[2] if len(args) > 2 else None
        explicit, padding = _pads(attrs, w.dim() - 2)
        if explicit:
            x = F.pad(x, explicit)
        return F.conv2d(x, w, bias, stride=attrs.get("strides", 1), padding=padding,
                        dilation=attrs.get("dilations", 1), groups=attrs.get("group", 1))
    if op in ("AveragePool", "MaxPool"):
        x = args[0]
        kernel = attrs["kernel_shape"]
        explicit, padding = _pads(attrs, len(kernel))
        if explicit:
            x = F.pad(x, explicit, value=0.0 if op == "AveragePool" else float("-inf"))
        if op == "MaxPool":
            return F.max_pool2d(x, kernel, attrs.get("strides", kernel), padding,
                                ceil_mode=bool(attrs.get("ceil_mode", 0)))
        return F.avg_pool2d(x, kernel, attrs.get("strides", kernel), padding,
                            ceil_mode=bool(attrs.get("ceil_mode", 0)),
                            count_include_pad=bool(attrs.get("count_include_pad", 0)))
    if op == "GlobalAveragePool":
        return args[0].mean(dim=(2, 3), keepdim=True)
    if op == "Relu":
        return F.relu(args[0])
    if op == "Clip":
        low = args[1] if len(args) > 1 and args[1] is not None else attrs.get("min")
        high = args[2] if len(args) > 2 and args[2] is not None else attrs.get("max")
        return torch.clamp(args[0], low, high)
    if op == "Add":
        return args[0] + args[1]
    if op == "Mul":
        return args[0] * args[1]
    if op == "MatMul":
        return torch.matmul(args[0], args[1])
    if op == "Gemm":
        a, b = args[0], args[1]
        a = a.t() if attrs.get("transA", 0) else a
        b = b.t() if attrs.get("transB", 0) else b
        out = attrs.get("alpha", 1.0) * torch.matmul(a, b)
        if len(args) > 2:
            out = out + attrs.get("beta", 1.0) * args[2]
        return out
    if op == "Reshape":
        shape = [int(s) if s != 0 else int(args[0].shape[i]) for i, s in enumerate(args[1])]
        return torch.reshape(args[0], shape)
    if op == "Flatten":
        return torch.flatten(args[0], attrs.get("axis", 1))
    if op == "Transpose":
        return args[0].permute(*attrs["perm"])
    if op == "Softmax":
        return torch.softmax(args[0], attrs.get("axis", -1))
    if op == "BatchNormalization":
        return F.batch_norm(args[0], args[3], args[4], args[1], args[2], False, 0.0, attrs.get("epsilon", 1e-5))
    if op == "Identity":
        return args[0]
    raise ValueError(f"ONNX operator {op} with inputs computed at run time is not supported")
