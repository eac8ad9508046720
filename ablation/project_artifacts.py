"""Artifacts that move with the project: MLflow's ``mlflow-artifacts:`` URIs
resolved against a local store's own folder.

A local (SQLite) store keeps its runs' artifacts in ``artifacts/`` beside its
database, and its experiments record them as ``mlflow-artifacts:/<experiment>``
(``tracking.get_or_create_experiment``): a URI relative to wherever the store
now is, not an absolute path that breaks when the project folder is zipped,
moved or copied. The two readers resolve it against the same folder:

- ``ablation ui`` serves that folder as the server's ``--artifacts-destination``
  (MLflow's own way to serve ``mlflow-artifacts:``);
- any MLflow client in this environment whose tracking URI is a SQLite store
  (the project's code, a notebook) gets a local repository over that folder
  from ``repository`` below, registered for the ``mlflow-artifacts`` scheme
  through MLflow's plugin entry point ``mlflow.artifact_repository``
  (``pyproject.toml``). With any other tracking URI, a server, it is MLflow's
  own repository for the scheme, unchanged.

MLflow imports this module while it imports itself, so it imports nothing
of MLflow's or the project's at the top, and changes nothing when imported.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

SCHEME = "mlflow-artifacts"
SQLITE = "sqlite:///"


def store_artifact_root(sqlite_uri: str) -> Path:
    """A SQLite store's artifact folder: ``artifacts/`` beside its database."""
    return Path(sqlite_uri[len(SQLITE):]).parent / "artifacts"


def local_folder(tracking_uri: str | None, artifact_uri: str) -> Path | None:
    """The folder an ``mlflow-artifacts:`` URI names in a SQLite store, or
    ``None`` for another URI or another kind of store."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme != SCHEME or not (tracking_uri or "").startswith(SQLITE):
        return None
    rel = PurePosixPath(parsed.path.lstrip("/"))
    if rel.is_absolute() or ".." in rel.parts:
        from ablation.errors import TrackingError

        raise TrackingError(f"artifact location {artifact_uri} leaves the artifact folder of the store "
                            f"{tracking_uri}; the store is damaged")
    return store_artifact_root(tracking_uri).joinpath(*rel.parts)


def repository(artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None):
    """MLflow's artifact repository for an ``mlflow-artifacts:`` URI: a local
    one over the store's folder when the tracking URI is a SQLite store, else
    MLflow's own (which asks the tracking server)."""
    import mlflow
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    folder = local_folder(tracking_uri or mlflow.get_tracking_uri(), artifact_uri)
    if folder is None:
        return MlflowArtifactsRepository(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
    return LocalArtifactRepository(folder.as_uri(), tracking_uri=tracking_uri, registry_uri=registry_uri)


def installed() -> bool:
    """Whether MLflow resolves the scheme through ``repository`` (the project
    is installed with its entry points; an install older than them is not)."""
    from mlflow.store.artifact.artifact_repository_registry import get_registered_artifact_repositories

    return get_registered_artifact_repositories().get(SCHEME) is repository
