"""Parse CTF parameters from a RELION .star or cryoSPARC .cs file into a cryoDRGN CTF pickle.

Writes N x 9 float32 [D, apix, dfU, dfV, dfAngle, kV, Cs, w, phase], as cryoDRGN's
parse_ctf_star / parse_ctf_csparc do. Values the file lacks come from the options;
--kv, --cs, -w and --ps override the file.
"""
from __future__ import annotations

from cryoscape.app.commands._common import add_metadata_args, read_metadata


def add_args(parser):
    add_metadata_args(parser, "output CTF .pkl", "pixel size in A (if the file lacks it)")
    parser.add_argument("--kv", type=float, help="voltage in kV (overrides the file)")
    parser.add_argument("--cs", type=float, help="spherical aberration in mm (overrides)")
    parser.add_argument("-w", type=float, help="amplitude contrast ratio (overrides)")
    parser.add_argument("--ps", type=float, help="phase shift in degrees (overrides)")


def main(args):
    import numpy as np
    from cryoscape.core.io.cryodrgn import save_ctf

    kind, meta, D = read_metadata(args)
    if kind == "star":
        from cryoscape.core.io.star import star_ctf
        ctf = star_ctf(meta, D=D, apix=args.apix, w=args.w, kv=args.kv, cs=args.cs, ps=args.ps)
    else:
        from cryoscape.core.io.cs import cs_ctf
        ctf = cs_ctf(meta, D=D, apix=args.apix, path=args.input)
        for col, value in ((5, args.kv), (6, args.cs), (7, args.w), (8, args.ps)):
            if value is not None:
                ctf[:, col] = value
    save_ctf(args.output, ctf)
    names = ["D", "apix", "dfU", "dfV", "dfAng", "kV", "Cs", "w", "phase"]
    first = ", ".join(f"{n}={v:.6g}" for n, v in zip(names, np.asarray(ctf[0])))
    print(f"{args.output}: CTF of {len(ctf)} particles; first: {first}")
    return 0
