"""The disk cache of generated data: ``cache_dir()/<kind>/<key>/``.

A dataset is one ``<split>.npz`` per corpus plus ``index.json`` (names, ids,
speakers, metadata). Writes go to a temporary sibling that is renamed into
place (or, when side files made the folder first, moved in file by file, the
index last), so a crash never leaves a half-written entry; an unreadable entry
is our own cache, so it is removed and regenerated. Small JSON side files (e.g.
the information ceilings) are replaced atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ablation import paths
from ablation.data.corpus import Corpus, Dataset

ARRAYS = ("features", "labels", "offsets", "bayes_pred", "bayes_conf")
INDEX = "index.json"


def folder(kind: str, key: str) -> Path:
    return paths.cache_dir() / kind / key


def write_dataset(ds: Dataset, dest: Path) -> None:
    """Write ``ds`` into ``dest`` (a temporary sibling, then renamed); warn and go on if it cannot."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    except OSError as e:
        warnings.warn(f"cannot cache in {dest.parent} ({e}); set ABLATION_CACHE to a writable folder")
        return
    try:
        index = {}
        for split, c in (("pool", ds.pool), ("test", ds.test)):
            if c is None:
                continue
            np.savez(tmp / f"{split}.npz", **{k: getattr(c, k) for k in ARRAYS})
            meta = {k: v for k, v in c.meta.items() if not k.startswith("_")}
            index[split] = {"name": c.name, "utt_ids": c.utt_ids, "speakers": c.speakers, "meta": meta}
        (tmp / INDEX).write_text(json.dumps({"source": ds.source, **index}))
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
            # the folder holds side files already (the ceiling hits are counted while the corpus is
            # generated): the corpus's files are moved in one by one, the index last, so that a reader
            # finds either no index or the whole corpus
            for name in sorted(os.listdir(tmp), key=lambda n: n == INDEX):
                os.replace(tmp / name, dest / name)
    except OSError as e:
        if not (dest / INDEX).is_file():
            warnings.warn(f"cannot cache in {dest} ({e}); set ABLATION_CACHE to a writable folder")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a successful rename; leftovers otherwise


def read_dataset(src: Path, class_names: tuple[str, ...], expect: dict,
                 restore: Callable[[dict], None] | None = None) -> Dataset | None:  # fmt: skip
    """The dataset cached in ``src``, or ``None`` when absent, unreadable (then removed) or another one.

    ``expect``: metadata the pool must carry (e.g. the generator config);
    ``restore``: fixes what JSON changed in a corpus's metadata (tuples).
    """
    if not (src / INDEX).is_file():  # nothing cached yet (a side file may be there already)
        return None
    try:
        return _read(src, class_names, expect, restore)
    except (OSError, ValueError, KeyError):
        shutil.rmtree(src, ignore_errors=True)
        return None


def _read(src: Path, class_names, expect: dict, restore) -> Dataset:
    index = json.loads((src / INDEX).read_text())
    if any(index["pool"]["meta"].get(k) != v for k, v in expect.items()):
        raise ValueError("the cache folder holds another dataset")

    def corpus(split: str) -> Corpus | None:
        if split not in index:
            return None
        with np.load(src / f"{split}.npz") as z:
            arrays = {k: z[k] for k in ARRAYS}
        entry = index[split]
        if restore is not None:
            restore(entry["meta"])
        return Corpus(
            name=entry["name"], utt_ids=tuple(entry["utt_ids"]), speakers=tuple(entry["speakers"]),
            class_names=class_names, meta=entry["meta"], **arrays,
        )  # fmt: skip

    return Dataset(source=index["source"], pool=corpus("pool"), test=corpus("test"))


def read_json(path: Path) -> dict:
    """A JSON side file, ``{}`` when absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, data: dict) -> None:
    """Atomic replace; a side file that cannot be written is only recomputed next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass


@contextlib.contextmanager
def lock(path: Path):
    """An inter-process lock on ``path``; none when its folder cannot hold one (the work is then only repeated)."""
    from filelock import FileLock

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        held = FileLock(str(path))
        held.acquire()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        held.release()


def _views_wanted(configs, extra_windows: Iterable[int] = ()) -> list[tuple[str, object, list]]:
    """``(spec, synthphone config, views)`` for each generated corpus the experiment ``configs`` use: the views
    whose hits need counting (a view that sees every utterance whole needs none). Real data: nothing."""
    from ablation.data import ceiling, sources, synthphone

    wanted: dict[str, set] = {}
    for cfg in configs:
        wanted.setdefault(cfg.data.source, set()).add(ceiling.view_of(cfg))
        wanted[cfg.data.source].update(ceiling.View("window", int(n)) for n in extra_windows)
    out = []
    for spec, views in wanted.items():
        scheme, arg = sources.parse_spec(spec)
        if scheme != "synthphone":
            continue
        cfg = synthphone.resolve(arg)
        longest = int(synthphone.utterances(cfg)[1].max())
        out.append((spec, cfg, sorted((v for v in views if not ceiling.sees_whole(v, longest)), key=lambda v: v.key)))
    return out


def prepare(configs, jobs: int = 1, extra_windows: Iterable[int] = ()) -> None:
    """Fill the cache before any worker starts: each generated corpus the experiment ``configs`` use, and
    the information-ceiling hits of every view their models have (and of ``extra_windows``: window lengths
    a search may pick), computed once in ``jobs`` processes. A cell then only reads them, and a second
    study on the same corpus finds everything here. Real data has nothing to prepare."""
    import concurrent.futures

    from ablation.data import ceiling, sources
    from ablation.errors import DataError

    for spec, cfg, todo in _views_wanted(configs, extra_windows):
        # the corpus is generated (or read) in a thread beside the processes that count the hits: both are
        # drawn from the config alone, and generation alone would leave all but one core idle
        side = concurrent.futures.ThreadPoolExecutor(1)
        corpus = side.submit(sources.load_dataset, spec)
        try:
            if todo:
                ceiling.corpus_hits(cfg, todo, jobs)
        except DataError:  # e.g. a nearly noiseless custom corpus: its cells go on without an input ceiling
            pass
        except BaseException:  # a stop: not held up by the generation (it finishes, and is cached, at exit)
            side.shutdown(wait=False)
            raise
        corpus.result()
        side.shutdown()


class EarlyHits:
    """The ceiling hits a study's cells will read, counted in ``jobs`` processes from the moment ``run`` has
    the study, while its main process loads (on a first run: generates) the corpus to check the cells
    against it. ``wait()`` before the workers start; ``stop()`` ends the processes at once (a refusal, a
    Ctrl-C) and stores nothing. Whatever this leaves uncounted, ``prepare`` counts (or refuses) again."""

    def __init__(self, work: list, jobs: int):
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._count, args=(work, jobs), name="ceiling-hits", daemon=True)
        self._thread.start()

    def _count(self, work: list, jobs: int) -> None:
        from ablation.data import ceiling

        for cfg, views in work:
            try:
                ceiling.corpus_hits(cfg, views, jobs, stop=self._stop)
            except BaseException:  # a stop (a Ctrl-C reaches the processes too), a corpus too clean for the
                return  # ceilings: ``prepare`` meets it again, in the main thread

    def wait(self) -> None:
        self._thread.join()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def count_hits_early(configs, jobs: int = 1, extra_windows: Iterable[int] = ()) -> EarlyHits | None:
    """Start counting the hits ``prepare`` would count that the cache lacks (``EarlyHits``); None if none."""
    from ablation.data import ceiling, synthphone

    work = []
    for _, cfg, views in _views_wanted(configs, extra_windows):
        stored = read_json(synthphone.cache_folder(cfg) / ceiling.HITS_FILE).get("hits", {})
        missing = [v for v in views if v.key not in stored]
        if missing:
            work.append((cfg, missing))
    return EarlyHits(work, jobs) if work else None


def _study_configs(study) -> tuple[list, list[int]]:
    """A study's cell configs, and the window lengths its search or tuning space may pick."""
    spec = study.spec
    spaces = [spec.search, spec.tuning.space if spec.tuning is not None else {}]
    extra = [n for space in spaces for key, dim in space.items() if key == "features.n_concat"
             for n in (dim.choices or [])]  # fmt: skip
    return [cell.config for cell in study.cells], extra


def prepare_study(study, jobs: int = 1) -> None:
    """``prepare`` for every cell of a study, and the window lengths its search or tuning space may pick."""
    configs, extra = _study_configs(study)
    prepare(configs, jobs, extra)


def count_study_hits_early(study, jobs: int = 1) -> EarlyHits | None:
    """``count_hits_early`` for every cell of a study (see ``prepare_study``)."""
    configs, extra = _study_configs(study)
    return count_hits_early(configs, jobs, extra)
