"""Invert the contrast of a map or an image stack (every value negated).

As relion_image_handler --multiply_constant -1 and cryoDRGN's invert_contrast; stacks are
streamed, so they may exceed memory. Written as float32 with the voxel size kept (and a
map's origin). Maps decoded from a run: `eval-vol --invert`.
"""
from __future__ import annotations


def add_args(parser):
    parser.add_argument("input", help="3D map (.mrc) or image stack (.mrcs)")
    parser.add_argument("-o", "--output", required=True, help="inverted map or stack")


def main(args):
    from cryoscape.app.commands._common import check_outputs
    from cryoscape.core.utilities import invert_contrast_file

    check_outputs([args.output], [args.input])
    h = invert_contrast_file(args.input, args.output)
    print(f"{args.output}: contrast inverted, shape {list(h.shape)}, {h.apix:.4g} A/px")
    return 0
