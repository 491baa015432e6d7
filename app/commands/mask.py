"""A soft-edged mask of a map: threshold, dilation and a raised-cosine edge, in A.

As relion_mask_create (--ini_threshold, --extend_inimask, --width_soft_edge, --lowpass) and
cryoDRGN's gen_mask (whose default threshold, half the 99.99th percentile of the map, is
`--threshold auto`, and whose default dilation and edge are these). The voxel size and origin
of the map are kept; the mask is 1 inside, 0 outside.
"""
from __future__ import annotations

from cryoscape.app.commands._common import positive_float


def _threshold(value: str):
    import argparse

    if value == "auto":
        return None
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or 'auto', got {value!r}") from None


def _nonnegative(value: str) -> float:
    import argparse

    try:
        x = float(value)
    except ValueError:
        x = -1.0
    if not x >= 0:
        raise argparse.ArgumentTypeError(f"must be a distance >= 0 in A, got {value!r}")
    return x


def add_args(parser):
    parser.add_argument("map", help="3D map (.mrc)")
    parser.add_argument("--threshold", type=_threshold, default=None, metavar="T|auto",
                        help="density level inside the mask (default auto: half the 99.99th "
                             "percentile of the map)")
    parser.add_argument("--dilate", type=_nonnegative, default=25.0, metavar="A",
                        help="grow the thresholded region by this distance (default 25 A)")
    parser.add_argument("--soft-edge", type=_nonnegative, default=15.0, metavar="A",
                        help="width of the raised-cosine edge beyond it (default 15 A)")
    parser.add_argument("--lowpass", type=positive_float, metavar="A",
                        help="low-pass the map to this resolution before thresholding")
    parser.add_argument("-o", "--output", required=True, help="mask (.mrc)")


def main(args):
    from cryoscape.app.commands._common import check_outputs
    from cryoscape.core.io.mrc import read_mrc, write_mrc
    from cryoscape.core.masks import map_mask
    from cryoscape.core.utilities import read_map_header

    check_outputs([args.output], [args.map])
    h = read_map_header(args.map)
    vol, _ = read_mrc(args.map)
    mask, t = map_mask(vol, h.apix, args.threshold, args.dilate, args.soft_edge, args.lowpass)
    write_mrc(args.output, mask, apix=h.apix, is_stack=False, origin=h.origin)
    print(f"{args.output}: threshold {t:.4g}, dilated {args.dilate:g} A, soft edge "
          f"{args.soft_edge:g} A; {float((mask == 1).mean()):.1%} of the box inside, "
          f"{float((mask > 0).mean()):.1%} above 0")
    return 0
