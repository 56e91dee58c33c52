"""Subcommands of the `diffskip` command; each module has `add_arguments(parser)` and `run(args)`."""
