"""The exceptions vaekit raises for problems a user can fix (bad files, configs, data)."""


class VaekitError(Exception):
    """A user-facing error: the message is one sentence naming what is wrong and where.

    The command-line tool prints it without a traceback and exits with status 2;
    tracebacks are reserved for bugs.
    """


class ConfigError(VaekitError, ValueError):
    """A configuration value, key or file is invalid."""


class DataError(VaekitError):
    """A dataset file is missing, corrupt, or has the wrong contents."""


class CheckpointError(VaekitError):
    """A run folder or checkpoint is missing, corrupt, or belongs to a different model."""


class TrainingDivergedError(VaekitError):
    """The training loss or its gradient became non-finite."""
