"""Exceptions users see: each message says what went wrong and what to do about it."""


class BackdropError(Exception):
    """Base class for errors shown to users as readable messages (never as tracebacks)."""


class UnknownNameError(BackdropError, KeyError):
    """A registry lookup for a name that is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0] if self.args else ""


class MissingResourceError(BackdropError):
    """Data, weights, a key or a service the step needs is not available here."""


class InvalidInputError(BackdropError, ValueError):
    """A parameter or file the user gave is not acceptable."""


class NothingRenderable(InvalidInputError):
    """The generator can make none of the requested images (every failure mode names a value it cannot render);
    the message is the generator's own, which lists what it can render."""


class Cancelled(BackdropError):
    """A long-running step stopped because ``should_stop()`` returned True."""
