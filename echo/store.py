"""Where runs are recorded, and whether a tracking server answers. Light on purpose: the CLI
asks before importing MLflow or TensorFlow, so a server that is down fails in seconds."""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request

from echo.errors import TrackingUnavailable

# MLflow's own tag for a run's parent: the UI nests a sweep's runs under the sweep's run.
PARENT_TAG = "mlflow.parentRunId"

# MLflow's tags for the git checkout a run's code came from (commit, branch, repoURL).
GIT_TAG_PREFIX = "mlflow.source.git."

# MLflow's embedded store: `mlflow ui` started in the same folder shows the runs.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def anchored(uri: str) -> str:
    """`uri` with a relative sqlite path (echo's default store) made absolute, for processes
    that start in another directory: a Ray worker starts in the Ray runtime's, not the sweep's."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + os.path.abspath(uri[len("sqlite:///") :])
    return uri


def sqlite_path(uri: str) -> str | None:
    """The database file of a sqlite URI (as given, relative or absolute); None for others."""
    if uri.startswith("sqlite:///"):
        return uri[len("sqlite:///") :] or None
    return None


def without_credentials(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    return urllib.parse.urlunsplit(
        parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))
    )


def without_password(uri: str) -> str:
    """`uri` with its password left out and its user kept: a database URL that still says whom
    to connect as, so that the password can come from PGPASSWORD or ~/.pgpass."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    user_info, host = parts.netloc.rsplit("@", 1)
    user = user_info.split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when a tracking server is down."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered: reachable, whatever it thinks of /health
    except OSError as err:
        reason = getattr(err, "reason", err)
        raise TrackingUnavailable(
            f"MLFLOW_TRACKING_URI={without_credentials(uri)}: cannot reach the tracking server "
            f"({reason})"
        ) from None
