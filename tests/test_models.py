"""Models: positional encodings, MLP layouts and the split first layer, decoders, VAE."""
from __future__ import annotations

import math

import pytest
import torch
from cryoscape.core.lattice import circular_mask
from cryoscape.core.models import (
    DEFAULTS,
    MLP,
    PE_TYPES,
    PRESETS,
    FourierDecoder,
    HartleyDecoder,
    PositionalEncoding,
    build_model,
    upper_half,
)
from cryoscape.core.models.cryodrgn_compat import from_cryodrgn_state_dict, to_cryodrgn_state_dict
from cryoscape.core.models.encoding import geometric_freqs


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("pe_type", PE_TYPES)
@pytest.mark.parametrize("pe_dim", [None, 8])
def test_pe_shapes(pe_type, pe_dim):
    D = 33
    if pe_type == "linear_lowf" and pe_dim is not None:
        with pytest.raises(ValueError):
            PositionalEncoding(pe_type, D, pe_dim)
        return
    pe = PositionalEncoding(pe_type, D, pe_dim, feat_sigma=0.5)
    n = (D // 2) if pe_dim is None else pe_dim
    expected = 3 if pe_type == "none" else 6 * n
    assert pe.out_dim == expected
    x = torch.rand(4, 10, 3) - 0.5
    assert pe(x).shape == (4, 10, expected)
    assert pe(x[0]).shape == (10, expected)


def test_geometric_series_endpoints():
    D = 65  # lattice of box 64: D2 = 32, DD = 64
    f = geometric_freqs("geom_ft", D, 32)  # the paper's: wavelengths 2/D .. 1
    assert f[0].item() == pytest.approx(64 * math.pi) and f[-1].item() == pytest.approx(2 * math.pi)
    f = geometric_freqs("geom_full", D, 32)
    assert f[0].item() == pytest.approx(64 * math.pi) and f[-1].item() == pytest.approx(1.0)
    f = geometric_freqs("geom_lowf", D, 32)
    assert f[0].item() == pytest.approx(32) and f[-1].item() == pytest.approx(1.0)
    f = geometric_freqs("geom_nohighf", D, 32)  # top frequencies removed
    assert f[0].item() == pytest.approx(32) and f[-1].item() == pytest.approx(2 * math.pi)
    assert torch.all(f[1:] < f[:-1])


def test_geometric_layout_per_axis():
    pe = PositionalEncoding("geom_lowf", 17, 4)
    c = torch.tensor([[0.1, -0.2, 0.3]])
    out = pe(c)[0].reshape(3, 8)  # per axis: [sin(c f), cos(c f)]
    for axis in range(3):
        k = c[0, axis] * pe.freqs
        torch.testing.assert_close(out[axis], torch.cat([torch.sin(k), torch.cos(k)]))


def test_gaussian_features_formula():
    pe = PositionalEncoding("gaussian", 65, 8, feat_sigma=0.5)
    assert pe.rand_freqs.shape == (24, 3) and not pe.rand_freqs.requires_grad
    assert "rand_freqs" in dict(pe.named_parameters())
    c = torch.rand(5, 3) - 0.5
    k = (c[:, None, :] * pe.rand_freqs[None] * 32).sum(-1)
    torch.testing.assert_close(pe(c), torch.cat([torch.sin(k), torch.cos(k)], -1))


@pytest.mark.parametrize("resid", [True, False])
@pytest.mark.parametrize("shared", [True, False])
def test_mlp_split_first_layer_equals_concatenation(resid, shared):
    mlp = MLP(12, 2, 16, 3, "relu", resid=resid)
    B, n = 3, 7
    x = torch.randn(n, 12) if shared else torch.randn(B, n, 12)
    z = torch.randn(B, 4)
    mlp = MLP(16, 2, 16, 3, "relu", resid=resid)  # in_dim = 12 + 4
    xb = x.expand(B, n, 12)
    full = mlp(torch.cat([xb, z[:, None, :].expand(B, n, 4)], -1))
    torch.testing.assert_close(mlp(x, z), full, rtol=1e-5, atol=1e-6)


def test_mlp_layouts_match_cryodrgn():
    keys = set(MLP(10, 2, 8, 4, resid=True).state_dict())
    assert keys == {"main.0.weight", "main.0.bias", "main.2.linear.weight", "main.2.linear.bias",
                    "main.4.linear.weight", "main.4.linear.bias", "main.6.weight", "main.6.bias"}
    keys = set(MLP(10, 1, 8, 4, resid=False).state_dict())
    assert keys == {"main.0.weight", "main.0.bias", "main.2.weight", "main.2.bias",
                    "main.4.weight", "main.4.bias"}
    assert "main.0.linear.weight" in MLP(8, 1, 8, 8).state_dict()  # in == hidden: residual


def test_defaults_are_cryodrgn_train_vae():
    assert DEFAULTS == {"qlayers": 3, "qdim": 1024, "players": 3, "pdim": 1024, "zdim": 8,
                        "pe_type": "gaussian", "pe_dim": None, "feat_sigma": 0.5,
                        "domain": "fourier", "activation": "relu", "encode_mode": "resid",
                        "enc_mask": None}
    m = build_model({}, 65)
    sd = m.state_dict()
    assert sd["encoder.main.0.weight"].shape == (1024, 3208)  # enc_mask 32 on the 65-lattice
    assert sd["encoder.main.8.weight"].shape == (16, 1024)
    assert sd["decoder.pe.rand_freqs"].shape == (96, 3)
    assert sd["decoder.decoder.main.0.weight"].shape == (1024, 6 * 32 + 8)
    assert sd["decoder.decoder.main.8.weight"].shape == (2, 1024)
    assert isinstance(m.decoder, FourierDecoder)


def test_paper_preset():
    m = build_model({"zdim": 1}, 33, preset="paper")
    assert isinstance(m.decoder, HartleyDecoder) and m.decoder.pe.pe_type == "geom_lowf"
    linears = [k for k in m.state_dict()
               if k.startswith("decoder.decoder") and k.endswith("weight")]
    assert len(linears) == PRESETS["paper"]["players"] + 2
    assert m.state_dict()["encoder.main.0.weight"].shape[0] == 128


def test_encoder_input_is_the_circle():
    mask = circular_mask(64, 32)
    assert int(mask.sum()) == 3208 and not mask[65 * 65 // 2]      # cryoDRGN's at D=64
    for D, r in ((64, 32), (64, 20), (16, 5)):     # integer points i^2 + j^2 <= r^2, not DC
        i = torch.arange(-(D // 2), D // 2 + 1)
        assert int(circular_mask(D, r).sum()) == int((i[:, None] ** 2 + i ** 2 <= r * r).sum()) - 1
    assert bool(circular_mask(64, -1).all())                        # enc_mask -1: everything
    m = build_model({"zdim": 3, "qdim": 16, "qlayers": 1, "pdim": 16, "players": 1}, 17)
    assert m.encoder.main[0].in_features == int(circular_mask(16).sum())
    mu, logvar = m.encode(torch.randn(5, int(circular_mask(16).sum())))
    assert mu.shape == logvar.shape == (5, 3)
    with pytest.raises(ValueError):
        build_model({"zdim": 3}, 17, enc_in_dim=100)
    with pytest.raises(ValueError):
        build_model({"zdim": 3, "enc_mask": 9}, 17)


def test_homogeneous_model_has_no_encoder():
    m = build_model({"zdim": 0, "pdim": 16, "players": 1}, 17)
    assert m.encoder is None
    assert m.decode(torch.rand(9, 3) - 0.5).shape == (9,)
    with pytest.raises(ValueError):
        m.decode(torch.rand(9, 3) - 0.5, torch.zeros(2, 1))


def test_kl_divergence():
    from cryoscape.core.models import VAE
    assert VAE.kl_divergence(torch.zeros(4, 2), torch.zeros(4, 2)).item() == 0.0
    mu, lv = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]])
    expected = 0.5 * (1.0 + (2.0 - 1 - math.log(2.0)))
    assert VAE.kl_divergence(mu, lv).item() == pytest.approx(expected)


def _rotation(seed):
    q = torch.randn(4, generator=torch.Generator().manual_seed(seed))
    q = q / q.norm()
    w, x, y, z = q
    return torch.tensor([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@pytest.mark.parametrize("dc", [True, False])
def test_fourier_decoder_symmetric_slices(dc):
    """Half evaluation of centrosymmetric slices equals per-point evaluation; H(-k) pairs."""
    dec = FourierDecoder(17, zdim=2, players=1, pdim=16, pe_dim=6)
    f = torch.linspace(-0.5, 0.5, 17)
    y, x = torch.meshgrid(f, f, indexing="ij")
    c = torch.stack([x.reshape(-1), y.reshape(-1), torch.zeros(289)], 1)
    keep = c.pow(2).sum(1) <= 0.25
    if not dc:
        keep[289 // 2] = False
    c = c[keep]
    rot = torch.stack([_rotation(1), _rotation(2), torch.eye(3)])
    coords = c @ rot  # [3, n, 3]
    z = torch.randn(3, 2)
    full = dec(coords, z)
    torch.testing.assert_close(dec(coords, z, symmetric=True), full, rtol=1e-5, atol=1e-6)
    _, h_neg = dec.hartley_pair(coords, z)
    off = coords.norm(dim=-1) > 0  # at k = 0 both spellings meet; cryoDRGN takes Re - Im
    torch.testing.assert_close(dec(-coords, z)[off], h_neg[off], rtol=1e-5, atol=1e-6)
    assert upper_half(coords).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_state_dict_round_trip_through_cryodrgn_names():
    for args in ({"zdim": 2, "qdim": 8, "qlayers": 1, "pdim": 8, "players": 1},
                 {"zdim": 0, "pdim": 8, "players": 1, "pe_type": "none", "domain": "hartley"},
                 {"zdim": 2, "qdim": 8, "qlayers": 1, "pdim": 8, "players": 1,
                  "domain": "hartley", "pe_type": "geom_lowf", "encode_mode": "mlp"}):
        a = {**DEFAULTS, **args}
        m = build_model(args, 17)
        theirs = to_cryodrgn_state_dict(m.state_dict(), a)
        assert "decoder.pe.rand_freqs" not in theirs
        m2 = build_model(args, 17)
        m2.load_state_dict(from_cryodrgn_state_dict(theirs, a))
        for k, v in m.state_dict().items():
            assert torch.equal(v, m2.state_dict()[k])
        m3 = build_model(args, 17)
        if args["zdim"]:
            m3.load_state_dict(theirs)  # the decoder accepts cryoDRGN's spellings itself
            assert torch.equal(m3.decoder.decoder.main[0].weight, m.decoder.decoder.main[0].weight)


@pytest.mark.parametrize("pe_type", ["gaussian", "geom_lowf"])
def test_mixed_precision_keeps_the_geometry_in_float32(pe_type):
    """Under bf16 autocast the MLP runs in bf16, but rotated coordinates and the positional
    encoding (phases up to pi D) stay float32: in bf16 they would be off by up to a radian."""
    torch.manual_seed(0)
    dec = FourierDecoder(65, zdim=2, players=1, pdim=32, pe_type=pe_type).eval()
    coords = torch.rand(500, 3) - 0.5
    exact = dec.pe(coords)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = dec.pe(coords)
        hidden = dec.decoder(mixed, torch.zeros(1, 2))
    assert mixed.dtype == torch.float32 and torch.equal(mixed, exact)
    assert hidden.dtype == torch.bfloat16
