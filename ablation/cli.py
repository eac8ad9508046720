"""The command line: parse, call, print, exit codes. Nothing else lives here.

Each command is a module in ``ablation.commands`` with ``register(subparsers)``
that adds its parser and sets ``func``. A user mistake (any ``AblationError``)
prints one line to stderr and exits 2; Ctrl-C, SIGTERM and SIGHUP exit 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ablation.errors import AblationError

COMMANDS = ("data", "train", "predict", "run", "list", "status", "report", "simulate", "ui")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ablation", description=__import__("ablation").__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"ablation.commands.{name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before torch loads: OpenMP threads that spin while waiting stall badly
    # when another process shares the cores (a 41 ms step took 871 ms).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ablation import interrupt

    interrupt.reset()
    previous = interrupt.install()
    try:
        return int(args.func(args) or 0)
    except AblationError as e:
        print(f"ablation {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ablation {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `ablation data ceiling | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        interrupt.restore(previous)
