"""What logging the per-epoch curves to MLflow adds to the tutorial_encdec run.

Trains `experiment=tutorial_encdec` in this process in pairs, once writing the `loss` and `acc`
curves and once with the curve writer replaced by a no-op, alternating, and prints one JSON
line with the median wall time of each. Extra arguments are config overrides.
"""

import json
import statistics
import sys
import time

from hydra import compose, initialize_config_dir

from echo import tracking
from echo.config import CONF_DIR, register_schema, to_echo_config
from echo.train import train

PAIRS = 3
write_curves = tracking.RunLog.log_history

register_schema()
with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
    cfg = to_echo_config(
        compose(
            "config",
            overrides=["experiment=tutorial_encdec", "mlflow.log_model=false", *sys.argv[1:]],
        )
    )

train(cfg)  # warm-up: creates the store and the experiment, fills caches
walls = {"logged": [], "not_logged": []}
for _ in range(PAIRS):
    for mode in walls:
        tracking.RunLog.log_history = (
            write_curves if mode == "logged" else (lambda self, *curves: None)
        )
        start = time.perf_counter()
        train(cfg)
        walls[mode].append(time.perf_counter() - start)
print(json.dumps({mode: statistics.median(times) for mode, times in walls.items()}))
