"""kit: the work behind the fine-tuning course notebooks (scope, license, prepare, train, evaluate, export)."""

__version__ = "0.1.0"


class KitError(Exception):
    """Base of every error kit raises for a user mistake; the message says what, where and how to fix it."""
