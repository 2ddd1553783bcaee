"""echo's configs. In a built wheel this folder is the package `echo.conf`, which Hydra reads
as `pkg://echo.conf`: a job composed again on another machine (a SLURM node, a Ray worker)
finds the configs in its own install instead of at the launching machine's path. Hydra only
reads a `pkg://` folder that holds an `__init__.py`; a source checkout reads conf/ directly."""
