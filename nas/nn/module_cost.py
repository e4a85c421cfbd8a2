"""The cost of a built module, counted with forward hooks: the check of
:func:`nas.core.cost.spec_cost`
that sees only modules and tensor shapes (the counting rules are :mod:`nas.core.cost`'s)."""

from __future__ import annotations

import torch
from torch import nn

from nas.core import scopes as names
from nas.core.cost import CostReport, LayerCost, cost_report
from nas.nn.binary import BinaryConv2d


def module_cost(model: nn.Module, example: torch.Tensor, count_bn: bool = False) -> CostReport:
    """Count the cost of a built module by running ``example`` through it with forward hooks on
    every ``nn.Conv2d`` (binary when it is a :class:`BinaryConv2d`) and ``nn.Linear``. Counted per
    image. Independent of the spec: it sees only modules and tensor shapes. Stages are read from
    the module names (:func:`nas.core.scopes.stage_of`; another model's stages are its top-level
    modules)."""
    layers: list[LayerCost] = []
    bn: dict[str, int] = {}
    handles = []

    def stage_of(name: str) -> str:
        return names.stage_of(name, other=None)

    def conv_hook(name: str):
        def hook(mod: nn.Conv2d, inputs, output):
            kh, kw = mod.kernel_size
            h, w = output.shape[-2:]
            params = mod.weight.numel()
            macs = mod.in_channels * mod.out_channels * kh * kw * h * w // mod.groups
            layers.append(
                LayerCost(
                    name,
                    stage_of(name),
                    isinstance(mod, BinaryConv2d),
                    mod.in_channels,
                    mod.out_channels,
                    kh,
                    mod.stride[0],
                    h,
                    params,
                    macs,
                )
            )

        return hook

    def fc_hook(name: str):
        def hook(mod: nn.Linear, inputs, output):
            params = mod.weight.numel()
            layers.append(
                LayerCost(
                    name,
                    stage_of(name),
                    False,
                    mod.in_features,
                    mod.out_features,
                    0,
                    1,
                    1,
                    params,
                    params,
                )
            )

        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook(name)))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(fc_hook(name)))
        elif count_bn and isinstance(mod, nn.modules.batchnorm._BatchNorm):
            bn[stage_of(name)] = bn.get(stage_of(name), 0) + sum(
                p.numel() for p in mod.parameters()
            )
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(example[:1])
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return cost_report(layers, bn)
