"""Simulate a small heterogeneous dataset, train on it and open the explorer."""


def add_args(parser):
    parser.add_argument("-o", "--outdir", default="cryoscape-demo", help="folder for the demo")


def main(args):
    print("cryoscape demo: not yet available (the explorer lands with the GUI issue)")
    return 0
