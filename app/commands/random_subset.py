"""Draw a random subset of particles as a cryoDRGN index pickle, and its complement.

SIZE is a number of particles or a fraction (0.1 = 10%). The particles are 0..N-1 (`--of N`),
those of a particle file (.mrcs, .txt, .star, .cs), or those an index pickle selects (the
subset is then drawn from that selection). Both outputs are sorted; the same seed gives the
same subset (as cryoDRGN's select_random).
"""
from __future__ import annotations


def add_args(parser):
    parser.add_argument("size", metavar="SIZE", help="number of particles, or a fraction")
    parser.add_argument("--of", required=True, metavar="N|FILE",
                        help="number of particles, a particle file or an index .pkl")
    parser.add_argument("-o", "--output", required=True, help="subset index (.pkl)")
    parser.add_argument("--complement", metavar="PKL",
                        help="the other particles' index (default: OUTPUT_complement.pkl)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def main(args):
    from pathlib import Path

    from cryoscape.app.commands._common import check_outputs
    from cryoscape.core.errors import CryoscapeError
    from cryoscape.core.export import export_index
    from cryoscape.core.utilities import count_particles, random_subset, subset_size

    out = Path(args.output)
    rest = Path(args.complement) if args.complement else \
        out.with_name(f"{out.stem}_complement.pkl")
    for p in (out, rest):
        if p.suffix.lower() != ".pkl":
            raise CryoscapeError(f"{p}: an index is written as a .pkl")
    if out.resolve() == rest.resolve():
        raise CryoscapeError(f"{out}: the subset and its complement need different names")
    if args.of.isdigit():
        n, ind = int(args.of), None
        check_outputs([out, rest])
    else:
        check_outputs([out, rest], [args.of])
        n, ind = count_particles(args.of)
    if n < 1:
        raise CryoscapeError(f"--of {args.of}: no particles to draw from")
    subset, complement = random_subset(n, subset_size(args.size, n), args.seed)
    if ind is not None:  # positions in the index -> the particles it selects
        subset, complement = ind[subset], ind[complement]
    export_index(out, subset)
    export_index(rest, complement)
    print(f"{out}: {len(subset)} of {n} particles (seed {args.seed}); "
          f"{rest}: the other {len(complement)}")
    return 0
