"""The `cryoscape` command: one subcommand per module in cryoscape.app.commands.

Each command module has a docstring (its first line is the help), `add_args(parser)` and
`main(args)`. Problems with the user's input (CryoscapeError), and files that cannot be read or
written (OSError naming the file), print one line and exit 1; CryoscapeWarnings print one line.
Nothing here imports Qt; only the GUI commands do, inside their main().
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings

from cryoscape.app import commands
from cryoscape.core import __version__
from cryoscape.core.errors import CryoscapeError, CryoscapeWarning


def command_modules() -> dict:
    """{command name: module} for every module in cryoscape.app.commands."""
    mods = {}
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            mods[info.name.replace("_", "-")] = importlib.import_module(
                f"{commands.__name__}.{info.name}")
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryoscape",
        description="Heterogeneous cryo-EM reconstruction (cryoDRGN) and a latent-space explorer.")
    parser.add_argument("--version", action="version", version=f"cryoscape {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, mod in command_modules().items():
        doc = (mod.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc.splitlines()[0] if doc else None, description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_args(p)
        p.set_defaults(func=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_default = warnings.showwarning

    def show(message, category, *rest, **kw):
        if issubclass(category, CryoscapeWarning):
            print(f"cryoscape {args.command}: warning: {message}", file=sys.stderr)
        else:
            show_default(message, category, *rest, **kw)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            return args.func(args) or 0
    except CryoscapeError as e:
        print(f"cryoscape {args.command}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        if e.filename is None:
            raise
        print(f"cryoscape {args.command}: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cryoscape {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
