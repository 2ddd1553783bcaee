"""echo's Optuna search as a Hydra sweeper plugin: hydra/sweeper=echo_optuna (echo.search)."""
