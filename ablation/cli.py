"""The command line: parse, call, print, exit codes. Nothing else lives here.

Each command is a module in ``ablation.commands`` with ``register(subparsers)``
that adds its parser and sets ``func``. A user mistake (any ``AblationError``)
prints one line to stderr and exits 2 (``--debug`` adds its traceback);
Ctrl-C, SIGTERM and SIGHUP exit 130. ``--project DIR`` picks the project
folder (it sets ``ABLATION_HOME``, so worker processes see the same one).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from pathlib import Path

from ablation.errors import AblationError

COMMANDS = ("init", "data", "train", "predict", "run", "budget", "list", "status", "report", "simulate", "ui")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ablation", description=__import__("ablation").__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"ablation.commands.{name}")
        module.register(sub)
    # accepted before or after the command; a command's own value wins (SUPPRESS keeps the main one)
    for p, default in ((parser, None), *((p, argparse.SUPPRESS) for p in sub.choices.values())):
        p.add_argument("--project", metavar="DIR", default=default,
                       help="the project folder (default: $ABLATION_HOME, else the nearest folder "
                            "above holding ablation.toml, else the checkout)")
        p.add_argument("--debug", action="store_true", default=default or False,
                       help="show the traceback of an error")
    return parser


def _use_project(folder: str) -> None:
    from ablation.errors import ConfigError
    from ablation.paths import MARKER

    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"--project {folder}: no such folder; create one with `ablation init {folder}`")
    if not (path / MARKER).is_file():
        raise ConfigError(f"--project {folder}: {path} holds no {MARKER}, so it is not a project; "
                          f"run `ablation init {folder}` there first")
    os.environ["ABLATION_HOME"] = str(path)


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
    home = os.environ.get("ABLATION_HOME")  # the project is pinned for this command only
    try:
        if args.project is not None:
            _use_project(args.project)
        else:  # found once, from here: worker processes (started elsewhere) work in the same project
            from ablation import paths

            os.environ["ABLATION_HOME"] = str(paths.project_dir())
        return int(args.func(args) or 0)
    except AblationError as e:
        if args.debug:
            traceback.print_exc()
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
        if home is None:
            os.environ.pop("ABLATION_HOME", None)
        else:
            os.environ["ABLATION_HOME"] = home
