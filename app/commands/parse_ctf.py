"""Parse CTF parameters from a RELION .star or cryoSPARC .cs file into a cryoDRGN CTF pickle.

Writes N x 9 float32 [D, apix, dfU, dfV, dfAngle, kV, Cs, w, phase], as cryoDRGN's
parse_ctf_star / parse_ctf_csparc do. Values the file lacks come from the options;
--kv, --cs, -w and --ps override the file.
"""
from __future__ import annotations


def add_args(parser):
    parser.add_argument("input", help="RELION .star or cryoSPARC .cs file")
    parser.add_argument("-o", "--output", required=True, help="output CTF .pkl")
    parser.add_argument("-D", type=int, help="box size in pixels (if the file lacks it)")
    parser.add_argument("--apix", type=float, help="pixel size in A (if the file lacks it)")
    parser.add_argument("--kv", type=float, help="voltage in kV (overrides the file)")
    parser.add_argument("--cs", type=float, help="spherical aberration in mm (overrides)")
    parser.add_argument("-w", type=float, help="amplitude contrast ratio (overrides)")
    parser.add_argument("--ps", type=float, help="phase shift in degrees (overrides)")
    parser.add_argument("--datadir", help="folder with the stacks (to read the box size from "
                                          "the first stack when the file lacks it)")


def main(args):
    from pathlib import Path

    import numpy as np
    from cryoscape.core.errors import InputFileError
    from cryoscape.core.io.cryodrgn import save_ctf

    path = Path(args.input)
    if path.suffix.lower() == ".star":
        from cryoscape.core.io.stack import star_box_or_stack
        from cryoscape.core.io.star import read_star, star_ctf
        star = read_star(path)
        D = args.D or star_box_or_stack(star, args.datadir)
        ctf = star_ctf(star, D=D, apix=args.apix, w=args.w, kv=args.kv, cs=args.cs, ps=args.ps)
    elif path.suffix.lower() == ".cs":
        from cryoscape.core.io.cs import cs_ctf, read_cs
        ctf = cs_ctf(read_cs(path), D=args.D, apix=args.apix, path=path)
        for col, value in ((5, args.kv), (6, args.cs), (7, args.w), (8, args.ps)):
            if value is not None:
                ctf[:, col] = value
    else:
        raise InputFileError(path, "expected a .star or .cs file")
    save_ctf(args.output, ctf)
    names = ["D", "apix", "dfU", "dfV", "dfAng", "kV", "Cs", "w", "phase"]
    first = ", ".join(f"{n}={v:.6g}" for n, v in zip(names, np.asarray(ctf[0])))
    print(f"{args.output}: CTF of {len(ctf)} particles; first: {first}")
    return 0
