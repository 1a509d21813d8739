"""HTTP middlewares, one job each; every module has a ``setup_*`` function that installs it."""
