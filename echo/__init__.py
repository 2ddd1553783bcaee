"""echo: LSTMs that echo random integers, as Hydra-configured, MLflow-tracked experiments."""
