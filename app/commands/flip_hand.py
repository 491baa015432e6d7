"""Flip the hand of a map: mirror it through the xy plane (the z axis reversed).

The voxel size and origin are kept. Maps decoded from a run: `eval-vol --flip`.
"""
from __future__ import annotations


def add_args(parser):
    parser.add_argument("map", help="3D map (.mrc)")
    parser.add_argument("-o", "--output", required=True, help="flipped map (.mrc)")


def main(args):
    from cryoscape.app.commands._common import check_outputs
    from cryoscape.core.decode import flip_hand
    from cryoscape.core.utilities import rewrite_map

    check_outputs([args.output], [args.map])
    h = rewrite_map(args.map, args.output, flip_hand)
    print(f"{args.output}: {h.shape[-1]}^3 map flipped (z reversed), {h.apix:.4g} A/px")
    return 0
