"""The image formation model on cryoDRGN's symmetric (D+1)^2 lattice, and the loss.

An image's Hartley transform X is compared, inside a circle of radius 0.5 cycles/px (the DC
term left out, as cryoDRGN), with the oriented central slice of the decoded volume,
V(coords @ R, z), times the CTF. Translations are undone on the data: moving the content of a
Hartley image by s gives H'(k) = cos(2 pi k.s) H(k) + sin(2 pi k.s) H(-k), and on the symmetric
lattice H(-k) is the flattened image reversed. The encoder sees the centred image inside its
own circle, phase-flipped by the sign of the CTF.
"""
from __future__ import annotations

import torch
from cryoscape.core.ctf import ctf_from_params
from cryoscape.core.lattice import circular_mask, coords_2d
from cryoscape.core.models import VAE


class SliceLattice:
    """Coordinates and masks of one box size D on the (D+1)^2 symmetric lattice.

    `keep` indexes the flattened lattice points stored per image (loss circle plus encoder
    circle); `loss_sel` and `enc_sel` index into those kept points.
    """

    def __init__(self, D: int, enc_radius: int | None = None, device="cpu"):
        self.D = D
        n = D + 1
        coords = coords_2d(D, symmetric=True)
        loss_mask = circular_mask(D)
        enc_mask = circular_mask(D, D // 2 if enc_radius is None else enc_radius)
        keep_mask = loss_mask | enc_mask
        self.keep = keep_mask.nonzero().squeeze(1).to(device)
        pos = torch.full((n * n,), -1, dtype=torch.long)
        pos[self.keep.cpu()] = torch.arange(len(self.keep))
        self.loss_sel = pos[loss_mask].to(device)
        self.enc_sel = pos[enc_mask].to(device)
        self.full_coords = coords.to(device)
        self.coords = coords[loss_mask].to(device)      # [m, 3] cycles/px, z = 0
        self.enc_freqs = coords[enc_mask, :2].to(device)
        self.n_loss, self.n_enc = int(loss_mask.sum()), int(enc_mask.sum())


def center_hartley(y: torch.Tensor, freqs: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Undo content shifts [B, 2] px of symmetric-lattice Hartley images y [B, (D+1)^2]."""
    theta = (2 * torch.pi) * (freqs[:, :2] @ (-shifts).T).T     # [B, n]
    return torch.cos(theta) * y + torch.sin(theta) * y.flip(-1)


def encoder_input(lat: SliceLattice, y: torch.Tensor, ctf: torch.Tensor | None) -> torch.Tensor:
    """The encoder's pixels of images y, phase-flipped by the sign of the CTF (as cryoDRGN)."""
    x = y[:, lat.enc_sel]
    return x if ctf is None else x * torch.sign(ctf_from_params(ctf, lat.enc_freqs, lat.D))


def run_batch(model, lat: SliceLattice, y: torch.Tensor, rot: torch.Tensor,
              ctf: torch.Tensor | None, beta: float, noise: torch.Generator | None,
              per_image: bool = False, tilt=None, z_ref: torch.Tensor | None = None):
    """Loss of one batch: (loss, mse, kl). y [B, kept points], rot [B, 3, 3], ctf [B, 9]|None.
    per_image: each of them per image [B] instead of the batch's means.

    tilt: the tilt pairs (y_tilt [B, kept points] centred as y, ctf_tilt [B, 9] | None,
    T [3, 3] the tilt rotation, core/poses.tilt_rotation): the tilted images are compared with
    the slices at T @ rot, at the same z, and mse is the mean over both images; a tilt-pair
    encoder sees both.

    The loss circle is centrosymmetric in order (point n-1-i = -point i), so a Fourier-domain
    decoder evaluates only half of it (`symmetric=True`).

    `noise` draws the reparameterisation samples (None: use the posterior mean).

    z_ref [B, zdim] (heterogeneous ab initio while poses are searched, core/train/abinit):
    the decoder is evaluated at these reference points instead of the encoder's sample, and
    the encoder's mean is drawn to them (squared error, added to the loss in place of the KL
    term, which is still reported).
    """
    z = None
    kl = y.new_zeros(len(y) if per_image else ())
    if model.zdim:
        x_tilt = None if tilt is None else encoder_input(lat, tilt[0], tilt[1])
        mu, logvar = model.encode(encoder_input(lat, y, ctf), x_tilt)
        kl = VAE.kl_divergence(mu.float(), logvar.float(), per_image)
        z = mu
        if z_ref is not None:
            z = z_ref.to(mu.dtype)
            pull = (mu.float() - z_ref).pow(2).sum(-1)
            pull = pull if per_image else pull.mean()
        elif noise is not None:
            eps = torch.randn(mu.shape, generator=noise, device=mu.device, dtype=mu.dtype)
            z = mu + eps * torch.exp(0.5 * logvar)
    target = y[:, lat.loss_sel]
    if tilt is not None:        # both images of each particle in one decoder call
        y_t, ctf_t, _ = tilt
        target = torch.cat([target, y_t[:, lat.loss_sel]])
        z = None if z is None else torch.cat([z, z])
        ctf = None if ctf is None else torch.cat([ctf, ctf if ctf_t is None else ctf_t])
    c = ctf_from_params(ctf, lat.coords[:, :2], lat.D) if ctf is not None else None
    with torch.autocast(y.device.type, enabled=False):     # coordinates in float32
        if tilt is not None:
            rot = torch.cat([rot, tilt[2].to(rot) @ rot])
        coords = lat.coords @ rot
    pred = model.decode(coords, z, symmetric=True).float()
    if c is not None:
        pred = pred * c
    mse = torch.nn.functional.mse_loss(pred, target, reduction="none" if per_image else "mean")
    if per_image:
        mse = mse.mean(-1)
        if tilt is not None:
            mse = 0.5 * (mse[:len(y)] + mse[len(y):])
    loss = mse + (pull if z_ref is not None else beta * kl / lat.n_loss)
    return loss, mse, kl
