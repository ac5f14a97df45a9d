"""Errors of the text front end."""


class TextError(ValueError):
    """The text cannot be spoken: empty, not a string, or nothing pronounceable in it."""
