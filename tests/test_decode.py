"""Volume decoding: Hermitian half-space evaluation, previews, batching, map options."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from cryoscape.core.decode import (
    apply_map_options,
    decode_hartley,
    decode_volumes,
    flip_hand,
    invert_contrast,
    lowpass,
)
from cryoscape.core.fourier import fft3_center, fourier_resample
from cryoscape.core.lattice import coords_3d
from cryoscape.core.models import FourierDecoder, HartleyDecoder, upper_half

D = 16


@pytest.fixture(scope="module")
def fourier_dec():
    torch.manual_seed(0)
    return FourierDecoder(D + 1, zdim=2, players=1, pdim=32, pe_dim=8).eval()


@pytest.fixture(scope="module")
def zs():
    return torch.tensor([[0.3, -1.0], [1.2, 0.5], [-0.7, 0.1]])


def test_half_lattice_equals_full_evaluation(fourier_dec, zs):
    """Evaluating only the lower half and filling by symmetry = evaluating every voxel."""
    h = decode_hartley(fourier_dec, zs, D)
    c = coords_3d(D)
    inside = c.pow(2).sum(1) <= 0.25
    with torch.inference_mode():
        full = fourier_dec(c[inside], zs)
    torch.testing.assert_close(h.reshape(3, -1)[:, inside], full, rtol=1e-5, atol=1e-6)
    assert torch.all(h.reshape(3, -1)[:, ~inside] == 0)


def test_decoded_volume_is_real_and_hermitian(fourier_dec, zs):
    """The volume's Fourier transform equals the decoder's (Re, Im) output on the lower half
    and its conjugate on the upper half: the map is exactly the real field the MLP describes."""
    vol = decode_volumes(fourier_dec, zs[:1], D)[0]
    assert vol.dtype == torch.float32 and torch.isfinite(vol).all()
    F = fft3_center(vol.double()).reshape(-1)
    c = coords_3d(D)
    sel = (c.pow(2).sum(1) <= 0.2) & (c.norm(dim=1) > 0)
    with torch.inference_mode():
        flip = upper_half(c[sel])
        q = torch.where(flip[:, None], -c[sel], c[sel])
        f = fourier_dec.mlp(q, zs[:1])[0].double()
    im = torch.where(flip, -f[:, 1], f[:, 1])
    np.testing.assert_allclose(F[sel].real.numpy(), f[:, 0].numpy(), atol=2e-4)
    np.testing.assert_allclose(F[sel].imag.numpy(), im.numpy(), atol=2e-4)


def test_batched_equals_one_by_one_and_chunking(fourier_dec, zs):
    vols = decode_volumes(fourier_dec, zs, D, norm=(0.5, 3.0))
    assert vols.shape == (3, D, D, D)
    for i in range(3):
        torch.testing.assert_close(decode_volumes(fourier_dec, zs[i:i + 1], D, norm=(0.5, 3.0),
                                                  chunk=97)[0], vols[i], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [FourierDecoder, HartleyDecoder])
def test_bf16_decode_is_the_float32_map_within_bf16_rounding(cls, zs):
    """bf16 autocast changes the products' rounding only (the positional encoding stays
    float32): maps within 2% and correlated > 0.999 with float32's, real and finite."""
    torch.manual_seed(1)
    dec = cls(2 * D + 1, zdim=2, players=2, pdim=64).eval()
    ref = decode_volumes(dec, zs, 2 * D)
    bf = decode_volumes(dec, zs, 2 * D, bf16=True)
    assert bf.dtype == torch.float32 and torch.isfinite(bf).all()
    assert ((bf - ref).norm() / ref.norm()).item() < 0.02
    assert not torch.equal(bf, ref)   # the products did run in bf16
    for a, b in zip(ref.reshape(3, -1), bf.reshape(3, -1)):
        assert np.corrcoef(a.numpy(), b.numpy())[0, 1] > 0.999


@pytest.mark.parametrize("kind", ["fourier", "hartley"])
def test_preview_equals_fourier_cropped_full_decode(kind, zs):
    torch.manual_seed(1)
    cls = FourierDecoder if kind == "fourier" else HartleyDecoder
    dec = cls(D + 1, zdim=2, players=1, pdim=32, pe_dim=8).eval()
    full = decode_volumes(dec, zs[:2], D, norm=(0.0, 2.0))
    for b in (8, 12):
        prev = decode_volumes(dec, zs[:2], D, norm=(0.0, 2.0), box=b)
        assert prev.shape == (2, b, b, b)
        crop = fourier_resample(full, b, sphere=kind == "fourier")
        err = (prev - crop).norm() / crop.norm()
        assert err < 1e-5, err
    # the preview keeps the density: its mean equals the full map's
    assert prev.mean().item() == pytest.approx(full.mean().item(), rel=1e-4)


def test_homogeneous_decode():
    torch.manual_seed(2)
    dec = HartleyDecoder(D + 1, zdim=0, players=1, pdim=16, pe_type="geom_lowf").eval()
    vol = decode_volumes(dec, None, D)
    assert vol.shape == (1, D, D, D)
    with pytest.raises(ValueError):
        decode_volumes(dec, None, D, box=7)


def _chiral(n=24):
    v = np.zeros((n, n, n), np.float32)
    v[4, 5, 6] = 1.0     # three distinct points: a chiral set
    v[10, 5, 6] = 2.0
    v[4, 15, 6] = 3.0
    v[4, 5, 18] = 4.0
    return v


def test_flip_invert():
    v = _chiral()
    f = flip_hand(v)
    assert f[23 - 4, 5, 6] == 1.0 and f[23 - 10, 5, 6] == 2.0 and f[4, 5, 6] == 0.0
    np.testing.assert_array_equal(flip_hand(f), v)
    assert torch.equal(flip_hand(torch.from_numpy(v)), torch.from_numpy(f))
    np.testing.assert_array_equal(invert_contrast(v), -v)
    np.testing.assert_array_equal(apply_map_options(v, 1.0, flip=True, invert=True), -f)


def test_lowpass_removes_high_frequencies_only(rng):
    n, apix, res = 32, 1.5, 6.0
    v = rng.standard_normal((n, n, n)).astype(np.float32)
    out = lowpass(v, res, apix)
    assert out.dtype == np.float32 and out.shape == v.shape
    Fo, Fv = fft3_center(out.astype(np.float64)), fft3_center(v.astype(np.float64))
    f = np.arange(n) - n // 2
    r = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + f[None, None, :] ** 2)
    cutoff = n * apix / res  # 8 Fourier pixels = 1/6 Å^-1
    assert np.abs(Fo[r > cutoff]).max() < 1e-3 * np.abs(Fv).max()
    np.testing.assert_allclose(Fo[r < cutoff - 1], Fv[r < cutoff - 1], atol=1e-3)
    with pytest.raises(ValueError):
        lowpass(v, 0.0, apix)
