"""metatts benchmarks: ``python -m eval`` (adaptation tables) and ``python -m eval score``."""
