"""What a user needs to find a run and trust it: what ran, from which code, on what."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Optional

from echo.config import SOURCE_TREE, EchoConfig
from echo.store import GIT_TAG_PREFIX, without_credentials

GIT_COMMIT = f"{GIT_TAG_PREFIX}commit"

# echo's distribution on PyPI's namespace ("echo" is another project's); it imports as `echo`.
DISTRIBUTION = "echo-lstm"
# The distributions a run depends on, as importlib.metadata names them.
PACKAGES = (DISTRIBUTION, "tensorflow", "keras", "mlflow", "hydra-core", "numpy", "optuna")
# Why one may be absent.
ABSENT = {
    DISTRIBUTION: "echo runs from its source tree on the path; pip install -e . installs it",
    "optuna": "the search extra installs it, for hydra/sweeper=echo_optuna",
}


def versions() -> dict[str, Optional[str]]:
    """The installed version of each of PACKAGES, None for one that is not installed. Read from
    the distributions' metadata: nothing is imported, so it answers at once."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def version_text() -> str:
    """What `echo-train --version` prints: echo's version and its libraries'."""
    lines = []
    for name, version in versions().items():
        if version is None:
            why = f" ({ABSENT[name]})" if name in ABSENT else ""
            lines.append(f"{name}: not installed{why}")
        else:
            lines.append(f"{name} {version}")
    lines.append(f"Python {platform.python_version()}")
    return "\n".join(lines)


def source_tags(tree: Optional[Path]) -> dict[str, str]:
    """MLflow's git tags (commit, branch, remote) for `tree` when it is a git checkout of its
    own; none otherwise. Installed echo has no tree; a tree inside another repository (a copied
    folder) would name that repository's commit, not echo's."""
    if tree is None:
        return {}

    def git(*args: str) -> Optional[str]:
        done = subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True)
        if done.returncode != 0:
            return None
        return done.stdout.strip() or None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != tree.resolve():
        return {}
    url = git("remote", "get-url", "origin")
    found = {
        GIT_COMMIT: git("rev-parse", "HEAD"),
        f"{GIT_TAG_PREFIX}branch": git("symbolic-ref", "--short", "-q", "HEAD"),  # detached: none
        f"{GIT_TAG_PREFIX}repoURL": without_credentials(url) if url else None,
    }
    return {tag: value for tag, value in found.items() if value}


def provenance_tags(cfg: EchoConfig, output_dir: Path) -> dict[str, str]:
    """Tags for a run of `cfg` logging to `output_dir`. TensorFlow is imported by now."""
    import tensorflow as tf

    tags = {
        "echo.model_kind": cfg.model.kind.value,
        "echo.command": " ".join(["python -m echo.train", *sys.argv[1:]])[:5000],
        "echo.output_dir": str(output_dir),
        "echo.data_seed": str(cfg.trainer.seed),
        "echo.weight_seed": str(cfg.trainer.seed),
        # Timings mean little without the machine they were taken on.
        "echo.cpu_count": str(os.cpu_count()),
        "echo.gpus": str(len(tf.config.list_physical_devices("GPU"))),
    }
    for package, version in versions().items():
        if version is not None:
            tags[f"echo.version.{package}"] = version
    return {**tags, **source_tags(SOURCE_TREE)}
