"""The one module that talks to MLflow.

Run schema (what every training run holds; the report reads exactly this):

- params: the resolved experiment config, flattened to dotted names
  (``model.depth``, ``features.n_concat``, ...), less the fields the run's
  training never reads (``experiment.run_params``: another family's model
  fields, SGD's momentum under another optimizer, the batching of the other
  input mode); ``config.toml`` holds every field.
- tags: ``ablation.kind`` (``single``, ``study``, ``cell``, or ``tuning`` for the
  run an arm's tuning trials nest under), ``ablation.experiment``
  (base experiment name), ``ablation.data.source``, ``ablation.data.fingerprint``,
  ``ablation.data.sizes`` (JSON: frames and utterances per split),
  ``ablation.git.commit``; for studies also ``ablation.study``,
  ``ablation.study.hash``, ``ablation.arm``, ``ablation.seed``, ``ablation.trial``,
  ``ablation.baseline`` (``true``/``false``), ``ablation.worker`` (``host:pid`` of the
  worker that ran the cell), ``ablation.phase`` (a tuned study's ``tuning`` or
  ``confirm``); ``ablation.error`` on failure.
- per-epoch metrics (step = epoch, 1-based), logged in one batch per epoch:
  ``epoch.train_loss``, ``epoch.train_acc``, ``epoch.val_loss``, ``epoch.val_acc``,
  ``epoch.lr``, ``epoch.frames_per_s``.
- final metrics (best checkpoint): ``val.acc``, ``val.macro_f1``, ``val.loss``,
  ``test.acc``, ``test.macro_f1`` (when test labels exist), ``recall.<phone>``
  and ``precision.<phone>`` on val, ``test_recall.<phone>`` when test labels
  exist, ``n_params``, ``macs_per_frame``, ``epochs_run``, ``best_epoch``,
  ``train_time_s`` (training steps only), ``eval_time_s`` (validation
  after each epoch and the final test pass), ``frames_per_s``, ``ceiling.val_acc`` and
  ``ceiling.test_acc`` (whole utterance) and ``ceiling.arm.val_acc`` /
  ``ceiling.arm.test_acc`` (the information ceiling of the arm's own input,
  see ``ablation.data.ceiling``; its view in the tag ``ablation.ceiling.view``)
  when the corpus has a known ceiling.
- artifacts: ``confusion_val.png``, ``confusion_val.csv``, ``per_class.csv``,
  ``config.toml``. In a local (SQLite) store they lie under the store's
  ``artifacts/`` folder and their URIs are relative to it
  (``mlflow-artifacts:/<experiment>/<run>/artifacts``), so a project folder
  that is moved or copied keeps its artifacts (``ablation.project_artifacts``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from ablation import paths
from ablation.tags import TAG, comparison_phase
from ablation.errors import TrackingError

# MLflow limits per log_batch call
_MAX_PARAMS, _MAX_METRICS, _MAX_TAGS = 100, 1000, 100

# MLflow's settings this project changes, set when this module is imported, which is before any
# of the project's code imports mlflow (importing mlflow starts its telemetry client): no usage
# telemetry (it writes ~/.config/mlflow/telemetry.json and sends usage records), and no "View run
# ... / View experiment ..." lines per run in the project's own output (`run` prints the study's
# link once). An explicit setting wins: MLFLOW_DISABLE_TELEMETRY=false turns telemetry on.
MLFLOW_DEFAULTS = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
for _key, _value in MLFLOW_DEFAULTS.items():
    os.environ.setdefault(_key, _value)

UI_HOST, UI_PORT = "127.0.0.1", 5000  # where `ablation ui` serves by default


def default_tracking_uri() -> str:
    return f"sqlite:///{paths.mlruns_dir() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def _quiet_mlflow() -> None:
    import logging

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow  # noqa: F401  (importing it sets its loggers to INFO, so quiet them after)

    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.ERROR)


def client(uri: str | None = None):
    """An ``MlflowClient`` for ``uri`` (created and checked on first use)."""
    _quiet_mlflow()
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        _ensure_sqlite(uri)
    # fail fast on an unreachable server instead of minutes of retries
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    saved = {k: os.environ.get(k) for k in quick}
    os.environ.update({k: v for k, v in quick.items() if saved[k] is None})
    try:
        c = MlflowClient(tracking_uri=uri)  # opens (and for SQLite checks) the store
        c.search_experiments(max_results=1)
    except Exception as e:  # any backend failure: unreachable server, bad db file
        hint = "check --tracking-uri / MLFLOW_TRACKING_URI"
        if uri.startswith("sqlite:///") and "already exists" in str(e):  # a creation killed by an older version
            hint = f"it is half-created (an interrupted first run): delete {uri[len('sqlite:///'):]} and run again"
        verb = "used" if uri.startswith("sqlite:///") else "reached"
        raise TrackingError(f"tracking store {uri} cannot be {verb} ({type(e).__name__}: {_first_line(e)}); {hint}") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
    return c


def check_writable(uri: str | None = None) -> None:
    """Refuse, in one line, a SQLite tracking store this user cannot write
    (before a command that logs runs writes anything, to either store)."""
    from ablation.storage import check_writable_sqlite

    uri = resolve_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        check_writable_sqlite(Path(uri[len("sqlite:///"):]), "tracking store", "--tracking-uri")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else ""


def _ensure_sqlite(uri: str) -> None:
    """Create a SQLite store once: migrated aside under a file lock, then moved
    into place, so a kill at any moment leaves no store or a whole one
    (workers starting at the same moment would otherwise race on the schema)."""
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    from ablation import faults
    from ablation.storage import LOCK_TIMEOUT_S, writable_lock

    db = Path(uri[len("sqlite:///"):])
    if db.exists():
        return
    lock = Path(str(db) + ".lock")
    writable_lock(lock, "tracking store")
    with FileLock(str(lock), timeout=LOCK_TIMEOUT_S):
        if db.exists():
            return
        for stale in db.parent.glob(f".{db.name}.creating-*"):  # left by a killed creator
            stale.unlink(missing_ok=True)
        tmp = db.with_name(f".{db.name}.creating-{os.getpid()}")
        try:
            MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)  # runs the migrations
        except Exception as e:
            raise TrackingError(
                f"tracking store {uri} cannot be created ({type(e).__name__}: {_first_line(e)}); "
                "check --tracking-uri / MLFLOW_TRACKING_URI"
            ) from None
        faults.point("store.mlflow")
        os.replace(tmp, db)


def artifact_root(uri: str | None = None) -> Path:
    """Artifacts sit beside a SQLite store (``<db folder>/artifacts``); the
    project's default store is ``mlruns/mlflow.db``, so ``mlruns/artifacts``."""
    from ablation.project_artifacts import SQLITE, store_artifact_root

    uri = resolve_tracking_uri(uri)
    if uri.startswith(SQLITE):
        return store_artifact_root(uri)
    return paths.mlruns_dir() / "artifacts"


def is_local(uri: str) -> bool:
    """A store on this machine's disk (SQLite or a path), not a tracking server."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def get_or_create_experiment(c, name: str) -> str:
    """The experiment's id, created if new. In a local store its artifacts lie
    in ``artifact_root(uri)/<name>``; a SQLite store records them as
    ``mlflow-artifacts:/<name>``, relative to that folder, so a moved or
    copied project keeps them (``ablation.project_artifacts``), unless this
    install predates the plugin that resolves such URIs: then, as before, as
    an absolute path. A tracking server picks its own location."""
    from ablation import project_artifacts

    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    slug = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
    location = None
    if c.tracking_uri.startswith(project_artifacts.SQLITE) and project_artifacts.installed():
        location = f"{project_artifacts.SCHEME}:/{slug}"
    elif is_local(c.tracking_uri):
        location = (artifact_root(c.tracking_uri) / slug).as_uri()
    try:
        return c.create_experiment(name, artifact_location=location)
    except Exception:
        exp = c.get_experiment_by_name(name)  # another worker created it first
        if exp is None:
            raise
        return exp.experiment_id


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=paths.PROJECT_DIR, capture_output=True, text=True, timeout=5
        )
        commit = out.stdout.strip()
        if out.returncode != 0 or not commit:
            return "unknown"
        dirty = subprocess.run(
            # reports/ is what `run` itself writes: a report made after another is still of a clean tree
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports"],
            cwd=paths.PROJECT_DIR, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(d: Mapping, prefix: str = "") -> dict[str, object]:
    """``{"model": {"depth": 2}}`` -> ``{"model.depth": 2}``."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


DATASET_CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own: the UI links the run to its commit
NOTE_TAG = "mlflow.note.content"  # MLflow's own: the run's description in the UI


class Run:
    """A handle to one MLflow run: the trainer's callbacks log through it."""

    def __init__(self, c, run_id: str):
        self.client, self.run_id = c, run_id

    def log_params(self, params: Mapping[str, object]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_str(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), _MAX_PARAMS):
            self.client.log_batch(self.run_id, params=items[i : i + _MAX_PARAMS])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """All metrics in one call (chunked only past MLflow's batch limit).
        Non-finite values are skipped: they would poison every aggregate."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [
            Metric(k, float(v), ts, int(step))
            for k, v in metrics.items()
            if v is not None and math.isfinite(float(v))
        ]
        for i in range(0, len(items), _MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=items[i : i + _MAX_METRICS])

    def set_tags(self, tags: Mapping[str, object]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), _MAX_TAGS):
            self.client.log_batch(self.run_id, tags=items[i : i + _MAX_TAGS])

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_path), artifact_path)

    def log_datasets(self, source: str, digest: str, sizes: Mapping[str, Mapping[str, int]], cut: str) -> None:
        """One MLflow dataset input per split (the UI's Datasets column): the
        digest is the corpus fingerprint, the profile the split's sizes. MLflow
        keeps one dataset per (name, digest), so the name carries the cut
        (``seed0``, ``course``): each seed's split is its own dataset."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        inputs = [
            DatasetInput(
                Dataset(name=f"{source}/{split}@{cut}", digest=digest, source_type="ablation",
                        source=json.dumps({"uri": source}), profile=json.dumps(dict(sizes[split]))),
                [InputTag(MLFLOW_DATASET_CONTEXT, context)],
            )
            for split, context in DATASET_CONTEXTS.items()
            if split in sizes
        ]
        _retry_unique_race(lambda: self.client.log_inputs(self.run_id, datasets=inputs))

    def finish(self, status: str = "FINISHED", error: str | None = None) -> None:
        if error:
            self.client.set_tag(self.run_id, TAG + "error", error[:5000])
        self.client.set_terminated(self.run_id, status=status)


# How MLflow's stores word a unique key that another writer inserted first: SQLite, PostgreSQL,
# MySQL, and MLflow's own wrapping of SQLAlchemy's IntegrityError.
_UNIQUE_RACE = ("unique constraint failed", "duplicate key value", "duplicate entry", "integrityerror")


def _retry_unique_race(call, attempts: int = 5):
    """Run a store write whose rows may be inserted at the same moment by another worker.

    MLflow keeps one dataset row per (experiment, name, digest) and creates it on first use: it
    looks the row up, then inserts it in the same transaction. Two workers whose first cells log
    the same split at once both miss it, and the second insert fails on the unique key, which
    would fail a cell that trained nothing wrong. The failed transaction wrote nothing, and on
    the next try the lookup finds the row the other worker committed, so the write is retried;
    any other error is raised at once."""
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            return call()
        except MlflowException as e:
            text = str(e).lower()
            if attempt == attempts - 1 or not any(k in text for k in _UNIQUE_RACE):
                raise
            time.sleep(0.05 * (attempt + 1))


def _param_str(v: object) -> str:
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    return str(v)


@contextmanager
def start_run(
    c, experiment_id: str, run_name: str, tags: Mapping[str, object], parent_run_id: str | None = None
) -> Iterator[Run]:
    """Create a run; mark it FAILED (with the reason) if the block raises,
    KILLED on Ctrl-C, FINISHED otherwise. Never leaves it RUNNING."""
    all_tags = {k: str(v) for k, v in tags.items()}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    mlrun = c.create_run(experiment_id, run_name=run_name, tags=all_tags)
    run = Run(c, mlrun.info.run_id)
    try:
        yield run
    except KeyboardInterrupt:
        run.finish("KILLED", "interrupted by the user")
        raise
    except BaseException as e:
        run.finish("FAILED", f"{type(e).__name__}: {e}")
        raise
    else:
        run.finish("FINISHED")


# ---- reading -------------------------------------------------------------


def search_runs(c, experiment_name: str, filter_string: str = ""):
    """All runs of an experiment as a pandas DataFrame (``params.*``,
    ``metrics.*``, ``tags.*`` columns, as ``mlflow.search_runs`` gives them);
    ``None`` if the experiment does not exist."""
    import mlflow

    exp = c.get_experiment_by_name(experiment_name)
    if exp is None:
        return None
    # mlflow.search_runs reads the global URI, and setting it also exports
    # MLFLOW_TRACKING_URI: put back what was there so the choice does not leak
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(c.tracking_uri)
    try:
        return mlflow.search_runs(
            experiment_ids=[exp.experiment_id], filter_string=filter_string, output_format="pandas",
            max_results=100_000,
        )
    finally:
        mlflow.set_tracking_uri(saved)  # None unsets the variable


def metric_history(c, run_id: str, key: str) -> list[tuple[int, float]]:
    """``[(step, value), ...]`` of one metric of one run, by step."""
    return sorted((m.step, m.value) for m in c.get_metric_history(run_id, key))


def download_artifact(c, run_id: str, path: str, dst: str | Path) -> Path:
    return Path(c.download_artifacts(run_id, path, str(dst)))


def runs_url(base: str, experiment_id: str, query: str | None = None) -> str:
    """An experiment's runs table in MLflow's machine-learning view
    (``workflowType``: without it MLflow 3 opens its GenAI view, whose sidebar
    leads to traces, not runs), with ``query`` added (a shared view)."""
    url = f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    return f"{url}&{query}" if query else url


# MLflow's UI opens a view state stored in this experiment tag when its link says viewStateShareKey=<key>
SHARED_VIEW_TAG = "mlflow.sharedViewState."
ARM_VIEW = "ablation-arms"


def comparison_filter(parent_run_id: str, phase: str) -> str:
    """The runs a study's report compares, as an MLflow search filter: the
    children of its newest parent run (an older generation's, and a tuned
    study's tuning trials, which nest under their arm's tuning run, are not)
    in the comparison's phase (``tags.comparison_phase``: no tuning trial of
    a store begun before they nested, no run of another phase)."""
    return f"tags.`mlflow.parentRunId` = '{parent_run_id}' AND tags.`{TAG}phase` = '{phase}'"


def arm_view(metric: str, factors: list[str], search_filter: str = "") -> dict:
    """The runs table as a study's comparison wants it, in the state MLflow's
    UI shares: the runs ``search_filter`` finds (the search box), grouped by
    arm (a group row shows the arm's mean), the metric, the factors, the seed
    and the size as columns, and every run drawn in the charts (MLflow draws
    the first 10 unless told). Its chart view opens on a section of its own,
    first: a scatter of each factor's param (x) against the metric (y) and a
    bar chart of the metric, one point or bar per run (``useGroupedValuesInCharts``
    off: MLflow would otherwise draw one per group, the arm's aggregate)."""
    columns = [f"metrics.`{metric}`", *(f"params.`{f}`" for f in factors), f"tags.`{TAG}seed`", "metrics.`n_params`"]
    charts = [_chart(f"{ARM_VIEW}-scatter-{i}", type="SCATTER", xaxis={"key": f, "type": "PARAM"},
                     yaxis={"key": metric, "type": "METRIC"}) for i, f in enumerate(factors)]
    charts.append(_chart(f"{ARM_VIEW}-bar", type="BAR", metricKey=metric))
    section = {"uuid": ARM_VIEW, "name": f"{metric} by factor", "display": True, "isReordered": False,
               "deleted": False, "isGenerated": False}
    return {"searchFilter": search_filter,
            "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": TAG + "arm"}]},
            "runsHiddenMode": "SHOW_ALL", "selectedColumns": columns,
            # MLflow adds charts of the other metrics in sections after this one (isAccordionReordered keeps it first)
            "compareRunCharts": charts, "compareRunSections": [section], "isAccordionReordered": True,
            "useGroupedValuesInCharts": False}


def _chart(uuid: str, **config) -> dict:
    """One chart card of the arm view's section, as MLflow's UI serialises it."""
    return {"uuid": uuid, "metricSectionId": ARM_VIEW, "runsCountToCompare": 100, "deleted": False,
            "isGenerated": False, **config}


def share_arm_view(c, experiment_id: str) -> str | None:
    """Store the study's arm view on its experiment (from its newest parent
    run's metric and factors) and return the link's query to open it; None
    when the store cannot take it (read-only) or the study has no parent run."""
    runs = c.search_runs([experiment_id], filter_string=f"tags.`{TAG}kind` = 'study'",
                         order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return None
    tags = runs[0].data.tags
    try:
        factors = [str(f) for f in json.loads(tags.get(TAG + "study.factors", "[]"))]
    except ValueError:
        factors = []
    # runs from before kinds were tagged say a tuned study by its protocol
    kind = tags.get(TAG + "study.kind") or ("tuned" if tags.get(TAG + "study.protocol") == "tuned" else "")
    state = arm_view(tags.get(TAG + "study.metric", "val.acc"), factors,
                     comparison_filter(runs[0].info.run_id, comparison_phase(kind)))
    try:
        c.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + ARM_VIEW, json.dumps(state))
    except Exception:  # a read-only store still gets its plain link
        return None
    return f"viewStateShareKey={ARM_VIEW}"


def study_link(c, name: str) -> str:
    """Where to see a study's runs: its runs table on the tracking server, or,
    for a local store, on the UI that ``ablation ui`` serves by default, with
    the command that starts it."""
    exp = c.get_experiment_by_name(name)
    base = c.tracking_uri if not is_local(c.tracking_uri) else f"http://{UI_HOST}:{UI_PORT}"
    link = runs_url(base, exp.experiment_id, share_arm_view(c, exp.experiment_id)) if exp is not None else base
    if not is_local(c.tracking_uri):
        return link
    start = "python -m ablation ui"
    if c.tracking_uri != default_tracking_uri():
        start += f" --tracking-uri {c.tracking_uri}"
    return f"{link} (once `{start}` serves it)"


# ---- report helpers


def study_names(c) -> list[str]:
    """Sorted names of the experiments holding at least one study parent run."""
    experiments, token = [], None
    while True:
        page = c.search_experiments(max_results=1000, page_token=token)
        experiments.extend(page)
        token = page.token
        if not token:
            break
    if not experiments:
        return []
    names = {e.experiment_id: e.name for e in experiments}
    found: set[str] = set()
    ids = list(names)
    for i in range(0, len(ids), 100):  # stores cap the experiments per search
        runs = c.search_runs(ids[i : i + 100], filter_string=f"tags.`{TAG}kind` = 'study'", max_results=50_000)
        found.update(names[r.info.experiment_id] for r in runs)
    return sorted(found)
