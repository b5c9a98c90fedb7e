"""The base of every error kit raises for a user's mistake; each stage subclasses it (PrepareError, TrainError, ...)."""


class KitError(Exception):
    """Base of every error kit raises for a user mistake; the message says what, where and how to fix it."""
