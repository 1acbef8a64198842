"""The `xpnet` command line: `xpnet train`, `gradcheck`, `experiment`, `search`, `book` and
`info` (also `python -m xpnet ...`); one module per subcommand, the options they share in
options.py."""
import argparse
import os
import sys

import xpnet
from xpnet.cli import book, experiment, gradcheck, info, search, train
from xpnet.errors import XpnetError


def main(argv=None):
    """Run the command line; returns the exit status (2 for a user error, printed as one line)."""
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    rest = argv[argv.index("--") + 1:] if "--" in argv else None  # a script's own arguments
    args = parser.parse_args(argv if rest is None else argv[:argv.index("--")])
    if rest is not None:
        if not hasattr(args, "script_args"):
            parser.error(f"unrecognized arguments: -- {' '.join(rest)}")
        args.script_args = rest
    try:
        return args.run(args)
    except XpnetError as exc:
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xpnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `xpnet info | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _parser():
    parser = argparse.ArgumentParser(prog="xpnet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"xpnet {xpnet.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (train, gradcheck, experiment, search, book, info):
        command.add_parser(commands)
    return parser
