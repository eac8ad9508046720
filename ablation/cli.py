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


def cpu_kernels() -> str | None:
    """The kernel set torch's CPU operators are pinned to: ``avx2`` on an x86-64 Linux CPU that has
    AVX2, else None (torch picks the best the CPU has).

    Torch picks its vectorised kernels by the CPU's instruction set, and the AVX-512 ones round
    differently: the same cell trained to other numbers on an AVX-512 machine than on an AVX2 one
    (val accuracy 0.7531 against 0.7542 for `deep_vs_shallow`'s `depth=2` seed 0), and the study's
    verdict changed with them. Pinned to AVX2, which every x86-64 machine of the last decade has,
    a study gives the same numbers on both. ``ATEN_CPU_CAPABILITY`` set by the user wins."""
    import platform

    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx2" if "avx2" in line.split() else None
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    # Before torch loads: OpenMP threads that spin while waiting stall badly
    # when another process shares the cores (a 41 ms step took 871 ms).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "ATEN_CPU_CAPABILITY" not in os.environ and (kernels := cpu_kernels()) is not None:
        os.environ["ATEN_CPU_CAPABILITY"] = kernels  # the same numbers on every x86-64 machine
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
