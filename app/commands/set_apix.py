"""Set the pixel size of an MRC map or stack, or of the particles of a RELION .star.

MRC: the header's voxel size is set; the data, mode, origin and the rest of the header are
copied as they are (as cryoDRGN's add_psize, relion_image_handler --angpix). STAR: the optics
pixel size (rlnImagePixelSize; RELION 3.0 files: rlnDetectorPixelSize with rlnMagnification
10000) of every particle; origins in A are rescaled so that the shifts in pixels stay put;
image names are rewritten where needed so that the stacks are found from the output's folder.
Defocus values are left as they are.
"""
from __future__ import annotations

from cryoscape.app.commands._common import positive_float


def add_args(parser):
    parser.add_argument("input", help=".mrc/.mrcs map or stack, or a .star file")
    parser.add_argument("--apix", type=positive_float, required=True,
                        help="the pixel size in A")
    parser.add_argument("-o", "--output", required=True,
                        help="output file of the same kind as the input")


def main(args):
    from pathlib import Path

    from cryoscape.app.commands._common import check_outputs
    from cryoscape.core.errors import CryoscapeError, InputFileError
    from cryoscape.core.utilities import MRC_SUFFIXES, set_mrc_apix, set_star_apix

    inp, out = Path(args.input), Path(args.output)
    check_outputs([out], [inp])
    kind = ".star" if inp.suffix.lower() == ".star" else \
        ".mrc" if inp.suffix.lower() in MRC_SUFFIXES else None
    if kind is None:
        raise InputFileError(inp, f"expected an MRC file ({', '.join(MRC_SUFFIXES)}) or .star")
    out_kind = ".star" if out.suffix.lower() == ".star" else \
        ".mrc" if out.suffix.lower() in MRC_SUFFIXES else None
    if out_kind != kind:
        raise CryoscapeError(f"{out}: the output must be a {'.star' if kind == '.star' else 'MRC'}"
                             " file, as the input")
    if kind == ".star":
        from cryoscape.core.io.concat import rebase_image_names
        from cryoscape.core.io.star import read_star, star_apix, write_star
        star = read_star(inp)
        old = star_apix(star)
        new = set_star_apix(star, args.apix)
        if "rlnImageName" in new.particles.columns:
            new.particles["rlnImageName"] = rebase_image_names(star, out)
        write_star(out, new)
        was = "unset" if old is None else ", ".join(f"{v:.4g}" for v in sorted(set(old)))
        print(f"{out}: {len(star)} particles, pixel size {was} -> {args.apix:.4g} A")
    else:
        h = set_mrc_apix(inp, out, args.apix)
        print(f"{out}: shape {list(h.shape)}, voxel size {h.apix:.4g} -> {args.apix:.4g} A")
    return 0
