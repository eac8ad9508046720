"""Reading a study file into a ``Study``: validated, its arms expanded and
every cell's config built (its parameter budget solved), so a bad study fails
in one line before anything is enqueued or logged. What is particular to a
kind of study (its section's rules, its arms, the settings it imposes) is
asked of the kind (``ablation.study.kinds``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ablation import config as C
from ablation import paths
from ablation.errors import ConfigError, StudyError, closest
from ablation.study import kinds
from ablation.study.spec import Cell, SeedRange, Study, StudySpec


def list_studies() -> list[str]:
    return paths.names("study")


def study_path(name: str) -> Path:
    return paths.find_study(name)


def spec_error(e: ValidationError, path: Path) -> StudyError:
    """A study file's first validation error as one line naming the key."""
    errors = e.errors()
    # a misspelt key also shows up as a missing one: name the misspelling
    err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        known = list(StudySpec.model_fields)
        return StudyError(f"unknown key '{loc}' in {path}{closest(loc.split('.')[-1], known)}")
    return StudyError(f"'{loc}' in {path}: {err['msg'].removeprefix('Value error, ')}; got {err.get('input')!r}")


def load_study(name: str, scale: str = "quick", seeds: int | None = None, overrides: list[str] = (),
               data: str | None = None) -> Study:
    """Read, validate and expand a study."""
    path = study_path(name)
    raw = C.read_toml(path)
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as e:
        raise spec_error(e, path) from None
    if scale not in ("quick", "full"):
        raise StudyError(f"unknown scale '{scale}': use quick or full")
    kind = kinds.kind_of(spec, path)
    base_path = C.resolve_experiment_path(spec.base)
    base = C.read_toml(base_path)
    base.setdefault("name", base_path.stem)
    data_ = base
    if spec.constraints.param_budget:  # before [set] and [scale.*], which may resize it
        data_ = C.apply_overrides(data_, {"model.param_budget": spec.constraints.param_budget})
    data_ = C.apply_overrides(data_, spec.set, where=f" in {path} [set]")
    data_ = C.apply_overrides(data_, kind.overrides(spec), where=f" in {path} [stopping]")
    data_ = C.apply_overrides(data_, spec.scale.get(scale, {}), where=f" in {path} [scale.{scale}]")
    factor_paths = _factor_paths(spec, path)
    cli = [C.parse_override(o) for o in overrides]
    for key, _ in cli:
        if key in factor_paths or key == "train.seed":
            raise StudyError(f"--set {key} conflicts with the study {path.stem}: it is what the study varies")
    data_ = C.apply_overrides(data_, dict(cli))
    if data:
        data_ = C.apply_overrides(data_, {"data.source": data})
    seed_list = _seed_list(spec.seeds, seeds)
    kind.check(spec, path, factor_paths, seed_list)
    arms, baseline, cells = kind.expand(spec, path, data_, seed_list)
    for arm in arms:
        last = [c for c in cells if c.arm == arm][-1]
        check_model(last.config, f" in {path}" + (f", arm {arm.label}" if baseline is not None else ""))
    kind.check_fields(spec, path, families(cells))
    return Study(
        name=path.stem, path=path, spec=spec, scale=scale, base_data=base, arms=arms, baseline=baseline,
        seeds=seed_list, cells=cells, options={"data": data, "seeds": seeds, "overrides": list(overrides)}, kind=kind,
    )


def families(cells: list[Cell]) -> list[str]:
    """The model families the study's cells use, in first-use order."""
    return list(dict.fromkeys(c.config.model.name for c in cells))


def check_model(cfg: C.ExperimentConfig, where: str) -> None:
    from ablation.train import model_kwargs

    try:
        model_kwargs(cfg)
    except ConfigError as e:
        raise StudyError(f"{e}{where}") from None


def _seed_list(declared: list[int] | SeedRange, n: int | None) -> list[int]:
    """The study's seeds: adaptive ones are 0 .. max-1, of which the runner runs what it needs."""
    if isinstance(declared, SeedRange):
        declared = list(range(declared.max))
    if n is None:
        return list(declared)
    if n < 1:
        raise StudyError(f"--seeds must be at least 1, got {n}")
    out = list(declared[:n])
    nxt = max(declared) + 1
    while len(out) < n:
        out.append(nxt)
        nxt += 1
    return out


def _factor_paths(spec: StudySpec, path: Path) -> set[str]:
    out = set()
    known = C.all_field_paths()
    for name, levels in spec.factors.items():
        if not levels:
            raise StudyError(f"factor '{name}' in {path} has no levels")
        if all(isinstance(v, dict) for v in levels):
            for lv in levels:
                for key in lv:
                    if key == "label":
                        continue
                    if key not in known:
                        raise StudyError(f"unknown factor path '{key}' in {path} (factor '{name}'){closest(key, known)}")
                    out.add(key)
        elif any(isinstance(v, dict) for v in levels):
            raise StudyError(f"factor '{name}' in {path} mixes tables and values; use one kind")
        else:
            if name not in known:
                raise StudyError(f"unknown factor path '{name}' in {path}{closest(name, known)}")
            out.add(name)
    return out
