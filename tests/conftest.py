"""Settings for the whole suite."""

from hypothesis import settings

# Hypothesis' per-example deadline is a timing assertion: on a busy CI machine the first example
# (imports, warm-up) can take far longer than the rest and fail a property that holds.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")
