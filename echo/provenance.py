"""What a user needs to find a run and trust it: what ran, from which code, on what."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from echo.config import CONF_DIR, EchoConfig

PACKAGES = ("echo", "tensorflow", "keras", "mlflow", "hydra-core", "numpy")


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
    for package in PACKAGES:
        tags[f"echo.version.{package}"] = version(package)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=CONF_DIR.parent, capture_output=True, text=True
    )
    if commit.returncode == 0:
        tags["mlflow.source.git.commit"] = commit.stdout.strip()
    return tags
