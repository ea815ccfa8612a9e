"""The model's exceptions: each message names the input or file and the problem."""


class SomaError(Exception):
    """Base class of every error the project raises on purpose (model, pipeline, flows): `soma` prints these
    as one line."""


class InvalidInputError(SomaError, ValueError):
    """An array handed to the Registrar cannot be registered (shape, channels, size, no data)."""


class CheckpointError(SomaError, ValueError):
    """A file is not a SOMA checkpoint of the expected model."""
