"""Errors users can fix themselves. The CLI prints their message on one line and exits 2."""


class ClayInputError(ValueError):
    """Bad input: a wrong path, parameter, file or combination. The message names the fix."""


class CheckpointError(ClayInputError):
    """A checkpoint that cannot be loaded safely or does not fit the requested model."""
