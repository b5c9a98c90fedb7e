"""kit: the work behind the fine-tuning course notebooks (scope, license, prepare, train, evaluate, export)."""

__version__ = "0.1.0"
