"""MLP blocks, plain and residual, with cryoDRGN's parameter layout (`main.<i>.weight`,
`main.<i>.linear.weight` for residual layers) so its state dicts load without renaming.

`MLP.forward(x, extra)` takes a second input concatenated after `x` without materialising the
concatenation: the first layer's weight is split into an `x` part and an `extra` part, and the
two products are broadcast-added. That is how a decoder applies one z per image to many shared
coordinates: x [n, p] or [B, n, p] with extra [B, e] -> [B, n, out].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}


def activation(name: str) -> type[nn.Module]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {list(ACTIVATIONS)}") from None


class ResidLinear(nn.Module):
    """y = W x + b + x."""

    def __init__(self, nin: int, nout: int):
        super().__init__()
        self.linear = nn.Linear(nin, nout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + x


class MLP(nn.Module):
    """in_dim -> hidden (nlayers + 1 hidden layers, activation after each) -> out_dim.

    resid=True: the hidden-to-hidden layers (and the first/last layer when its in and out sizes
    agree) are residual, as cryoDRGN's ResidLinearMLP; resid=False: plain Linear layers (MLP).
    """

    def __init__(self, in_dim: int, nlayers: int, hidden_dim: int, out_dim: int,
                 act: str | type[nn.Module] = "relu", resid: bool = True):
        super().__init__()
        act_cls = activation(act) if isinstance(act, str) else act

        def layer(nin, nout):
            return ResidLinear(nin, nout) if resid and nin == nout else nn.Linear(nin, nout)

        layers = [layer(in_dim, hidden_dim), act_cls()]
        for _ in range(nlayers):
            layers += [layer(hidden_dim, hidden_dim), act_cls()]
        layers.append(layer(hidden_dim, out_dim))
        self.main = nn.Sequential(*layers)
        self.in_dim, self.out_dim, self.resid = in_dim, out_dim, resid

    def first(self, x: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """The first layer on cat(x, extra broadcast over x's point axis), never materialised."""
        lin0 = self.main[0]
        if extra is None:
            return lin0(x)
        ones = [1] * max(x.dim() - 2, 1)  # extra [B, e] -> [B, 1.., e] against x [(B,) .., n, p]
        if isinstance(lin0, ResidLinear):  # in_dim == hidden: needs the concatenated input
            e = extra.reshape(extra.shape[0], *ones, extra.shape[-1])
            shape = torch.broadcast_shapes(x.shape[:-1], e.shape[:-1])
            return lin0(torch.cat([x.expand(*shape, -1), e.expand(*shape, -1)], -1))
        nx = x.shape[-1]
        w, b = lin0.weight, lin0.bias
        hx = F.linear(x, w[:, :nx])  # [..., n, h]
        he = F.linear(extra, w[:, nx:], b)  # [B, h]
        return hx + he.reshape(he.shape[0], *ones, he.shape[-1])

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        h = self.first(x, extra)
        if torch.is_grad_enabled():
            for mod in self.main[1:]:
                h = mod(h)
            return h
        for mod in self.main[1:]:  # inference: activations and residual sums in place
            if isinstance(mod, ResidLinear):
                h = mod.linear(h).add_(h)
            elif isinstance(mod, nn.ReLU):
                h = h.relu_()
            elif isinstance(mod, nn.LeakyReLU):
                h = F.leaky_relu_(h, mod.negative_slope)
            else:
                h = mod(h)
        return h
