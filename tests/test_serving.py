"""`mlflow models serve` of a run's `echoes` model answers echoes, for real, on loopback."""

import json
import os
import sys
import urllib.request

import pytest
from conftest import compose_config, free_port
from test_predict_report import LEARNS
from test_scale import answers, background

from echo import train as echo_train


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.slow
@pytest.mark.parametrize("stateful", [True, False], ids=["stateful", "stateless"])
def test_a_served_run_answers_one_echo_per_window(tracking_uri, tmp_path, stateful):
    metrics = echo_train.train(compose_config([*LEARNS, f"model.stateful={stateful}"]))
    assert metrics["eval_exact"] == 1.0  # so that the right answers are known
    port = free_port()
    argv = [sys.executable, "-m", "mlflow", "models", "serve", "-m"]
    argv += [f"runs:/{metrics.run_id}/echoes", "--env-manager", "local"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    with background(argv, tmp_path / "serve.log", lambda: answers(url + "/ping"), 180, env=env):
        # Two windows for a stateful model built for batches of 3: padded, and cut back.
        status, answer = post(url + "/invocations", {"inputs": [[1, 2, 3], [9, 8, 7]]})
        assert (status, answer) == (200, {"predictions": [[1, 2], [9, 8]]})
        status, answer = post(url + "/invocations", {"inputs": [[1, 2, 3, 4]]})
        assert status == 400 and "the model takes data.n_in=3" in answer["message"]
