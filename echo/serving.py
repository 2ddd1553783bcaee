"""The `echoes` model every run logs beside its Keras `model`: windows in, integer echoes out.

`mlflow models serve -m runs:/RUN_ID/echoes --env-manager local` answers
`{"inputs": [[1,2,3,4,5],[9,8,7,6,5]]}` with one list of n_out integers per window, as
`python -m echo.predict run_id=RUN_ID 'sequences=[...]'` prints them: each window starts from
fresh state, and a stateful model's fixed batch is padded and its extra echoes cut. MLflow's
other environment managers would build an environment from PyPI, where echo is not, hence
`--env-manager local`. The model is rebuilt from the run's config and given its weights.

MLflow logs this file as the model's code ("models from code"), not a pickled object; loading
it runs `set_model` below.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.models
import mlflow.pyfunc


class Echoes(mlflow.pyfunc.PythonModel):
    """Loaded by MLflow from the artifacts `config` (the run's config.yaml) and `weights`."""

    def load_context(self, context) -> None:
        from echo.config import from_saved
        from echo.environment import keras_on_tensorflow

        self.cfg = from_saved(Path(context.artifacts["config"]).read_text())
        with keras_on_tensorflow():
            from echo.models import build_model

            self.model = build_model(self.cfg.model, self.cfg.data, self.cfg.trainer.batch_size)
        self.model.load_weights(context.artifacts["weights"])

    # The type hints are the model's signature: MLflow checks and converts what it is sent.
    def predict(self, context, model_input: list[list[int]], params=None) -> list[list[int]]:
        from mlflow.exceptions import MlflowException

        from echo.errors import BadRequest
        from echo.predict import PredictConfig, check, echo_sequences

        windows = [[int(value) for value in window] for window in model_input]
        # The same checks as echo.predict's: a window of the wrong length or a value out of
        # range is refused with its reason, which the server returns as a 400.
        try:
            check(PredictConfig(run_id="", sequences=windows), self.cfg)
        except BadRequest as err:
            raise MlflowException.invalid_parameter_value(str(err)) from None
        return echo_sequences(self.model, self.cfg, windows)


mlflow.models.set_model(Echoes())
