"""Subcommands of `cryoscape`: each module has add_args(parser) and main(args)."""
