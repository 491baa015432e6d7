"""Downsample particle images by Fourier cropping (chunked, bounded memory).

PARTICLES is a .mrcs/.mrc stack, a .txt list of stacks, a .star or a .cs file. The new stack
is written to OUT.mrcs; for a .star (.cs) input a .star (.cs) beside it names the new stack,
with the box and pixel size updated and every other column (field) kept.
"""
from __future__ import annotations

from pathlib import Path

from cryoscape.app.commands._common import check_outputs


def add_args(parser):
    parser.add_argument("particles", help="input .mrcs, .mrc, .txt, .star or .cs")
    parser.add_argument("-D", type=int, required=True, help="new box size in pixels (even)")
    parser.add_argument("-o", "--output", required=True, help="output stack (.mrcs)")
    parser.add_argument("-b", "--chunk", type=int, default=None,
                        help="images per chunk (default: about 256 MB of work per chunk)")
    parser.add_argument("--datadir", help="folder with the stacks a .star/.cs file names")


def main(args):
    from cryoscape.core.errors import CryoscapeError
    from cryoscape.core.io import downsample as ds
    from cryoscape.core.io.stack import open_images

    inp, out = Path(args.particles), Path(args.output)
    if out.suffix.lower() not in (".mrcs", ".mrc"):
        raise CryoscapeError(f"{out}: the output must be an .mrcs stack")
    if args.chunk is not None and args.chunk < 1:
        raise CryoscapeError("--chunk must be at least 1")
    src = open_images(inp, lazy=True, datadir=args.datadir)
    D = src.D
    meta_out = out.with_suffix(inp.suffix.lower()) if inp.suffix.lower() in (".star", ".cs") \
        else None
    check_outputs([out, meta_out], [inp, *src.stacks])
    if meta_out is not None and meta_out.suffix == ".star":  # read before writing anything
        from cryoscape.core.io.star import read_star, write_star
        meta = read_star(inp)
    elif meta_out is not None:
        from cryoscape.core.io.cs import read_cs, write_cs
        meta = read_cs(inp)
    apix = ds.downsample_stack(src, args.D, out, chunk=args.chunk)
    print(f"{out}: {len(src)} images, {D} -> {args.D} px, {src.apix:.4g} -> {apix:.4g} A/px")
    if meta_out is not None:
        name = ds.relative_name(out, meta_out)
        if meta_out.suffix == ".star":
            write_star(meta_out, ds.downsampled_star(meta, name, D, args.D))
        else:
            write_cs(meta_out, ds.downsampled_cs(meta, name, D, args.D))
        print(f"{meta_out}: names the new stack")
    return 0
