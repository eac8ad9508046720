"""Model families from the user's code: a project's ``models/*.py`` and the
installed packages' ``ablation.models`` entry points.

Such a module registers its family exactly as the built-in ones do
(``register_model`` with declared ``Param`` fields). What goes wrong in it is
the user's to fix, so every failure names the user's file and line (the
deepest frame of the traceback in that file) on one line; ``--debug`` shows
the whole traceback.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from typing import Callable, Iterator

import torch

from ablation.errors import ConfigError

MODULE_PREFIX = "ablation_project_models"


def sources(models_dir: Path, group: str) -> Iterator[tuple[str, Callable[[], object]]]:
    """``(origin, load)`` for each module to import: the folder's ``*.py``
    (``_``-prefixed ones are helpers, not imported), then the entry points."""
    if models_dir.is_dir():
        for path in sorted(models_dir.glob("*.py")):
            if not path.name.startswith("_"):
                yield str(path), lambda path=path: _import_file(path)
    from importlib.metadata import entry_points

    for ep in entry_points(group=group):
        yield f"entry point '{ep.name} = {ep.value}'", ep.load


def _import_file(path: Path) -> object:
    name = f"{MODULE_PREFIX}.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickle look a module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def where(e: BaseException, origin: str) -> str:
    """``file:line`` of the deepest frame of ``e`` in the user's code (the
    origin's file, else any file outside this package), else the origin."""
    frames = traceback.extract_tb(e.__traceback__)
    if isinstance(e, SyntaxError) and e.filename:
        return f"{e.filename}:{e.lineno}"
    file = origin.split(":")[0]
    package = str(Path(__file__).resolve().parents[1])
    for pick in (lambda f: f.filename == file, lambda f: not f.filename.startswith((package, "<"))):
        mine = [f for f in frames if pick(f) and "site-packages" not in f.filename]
        if mine:
            return f"{mine[-1].filename}:{mine[-1].lineno}"
    return origin


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def import_failure(origin: str, e: BaseException) -> str:
    return (f"{where(e, origin)}: the model module cannot be imported ({_reason(e)}); "
            "fix it, or move it out of models/ (--debug shows the traceback)")


def _forward_origin(model: torch.nn.Module, fallback: str) -> str:
    try:
        forward = type(model).forward
        return f"{inspect.getsourcefile(forward)}:{inspect.getsourcelines(forward)[1]}"
    except (TypeError, OSError):
        return fallback


def build_checked(fam, *, n_concat: int, frame_dim: int, n_classes: int, **fields):
    """Build a user's model and check, on a tiny input of zeros, that its
    forward takes what its family declares and returns one row of class
    scores per frame: a wrong shape is the user's error, not a crash mid-study."""
    try:
        model = fam.builder(n_concat=n_concat, frame_dim=frame_dim, n_classes=n_classes, **fields)
    except Exception as e:
        raise ConfigError(f"{where(e, fam.origin)}: model '{fam.name}' cannot be built with {fields} "
                          f"({_reason(e)}); fix its builder (--debug shows the traceback)") from e
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"{fam.origin}: model '{fam.name}' builds a {type(model).__name__}, not a "
                          "torch.nn.Module; register an AblationModel subclass or a function returning one")
    mode = getattr(model, "input_mode", fam.input)
    b, t = 2, 3
    if mode == "sequence":
        x, args, want = torch.zeros(b, t, n_concat * frame_dim), (torch.full((b,), t),), (b, t, n_classes)
    else:
        x, args, want = torch.zeros(b, n_concat, frame_dim), (), (b, n_classes)
    was_training = model.training
    model.eval()  # no dropout draws, no BatchNorm statistics updated: the check leaves no trace
    try:
        with torch.no_grad():
            out = model(x, *args)
    except Exception as e:
        raise ConfigError(f"{where(e, _forward_origin(model, fam.origin))}: the forward of model '{fam.name}' "
                          f"fails on a {mode} input of shape {tuple(x.shape)} ({_reason(e)}); "
                          "fix its forward (--debug shows the traceback)") from e
    finally:
        model.train(was_training)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != want:
        raise ConfigError(
            f"{_forward_origin(model, fam.origin)}: the forward of model '{fam.name}' returns {shape} for a "
            f"{mode} input of shape {tuple(x.shape)}; it must return {want} (one score per class "
            f"{'per frame' if mode == 'sequence' else 'per window'}, {n_classes} classes in this data)"
        )
    return model
