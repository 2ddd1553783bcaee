"""Where Hydra finds echo's Optuna search: Hydra instantiates sweepers only from the
hydra_plugins package, and finds their configs in its ConfigStore. The work is echo.search's.

Hydra 1.3 discovers plugins by scanning hydra_plugins, which misses a package installed in
editable mode (Hydra issues 2359 and 3252), so echo.config.register_schema also imports this
module and registers the class itself."""

from hydra.core.config_store import ConfigStore

from echo.search import OptunaSearch, SearchConf


class EchoOptunaSweeper(OptunaSearch):
    """hydra/sweeper=echo_optuna."""


ConfigStore.instance().store(
    group="hydra/sweeper", name="echo_optuna", node=SearchConf, provider="echo"
)
