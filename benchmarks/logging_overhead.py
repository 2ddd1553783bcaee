"""What logging the per-epoch curves, and checkpointing every second, add to tutorial_encdec.

Trains `experiment=tutorial_encdec` in this process in rounds of three, alternating: writing the
`loss` and `acc` curves; with the curve writer replaced by a no-op; and writing the curves with
a periodic checkpoint every second of training (`trainer.checkpoint_every=1`, the default being
60). Prints one JSON line with the median wall time of each. Extra arguments are config
overrides.
"""

import copy
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
every_second = copy.deepcopy(cfg)
every_second.trainer.checkpoint_every = 1.0
walls = {"logged": [], "not_logged": [], "checkpoint_every_1": []}
for _ in range(PAIRS):
    for mode in walls:
        tracking.RunLog.log_history = (
            (lambda self, *curves: None) if mode == "not_logged" else write_curves
        )
        start = time.perf_counter()
        train(every_second if mode == "checkpoint_every_1" else cfg)
        walls[mode].append(time.perf_counter() - start)
print(json.dumps({mode: statistics.median(times) for mode, times in walls.items()}))
