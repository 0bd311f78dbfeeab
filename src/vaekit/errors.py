"""The exceptions vaekit raises for problems a user can fix (bad files, configs, data)."""


class VaekitError(Exception):
    """A user-facing error: the message is one sentence naming what is wrong and where.

    The command-line tool prints it without a traceback and exits with status 2;
    tracebacks are reserved for bugs.
    """


class ConfigError(VaekitError, ValueError):
    """A configuration value, key or file is invalid.

    For an invalid value, `key` is its dotted name (model.latent_dim), `value` the value and
    `allowed` what is allowed, so that the command line can name the flag the value came from.
    """

    def __init__(self, message: str, key: str | None = None, value: object = None, allowed: str = "") -> None:
        super().__init__(message)
        self.key, self.value, self.allowed = key, value, allowed

    def within(self, origin: str) -> "ConfigError":
        """The same error, its message prefixed with where the config came from."""
        return ConfigError(f"{origin}: {self}", self.key, self.value, self.allowed)


class ModelError(VaekitError, ValueError):
    """A model is asked for what its family does not have (samples or log p(z) of an autoencoder, which has
    no prior)."""


class DataError(VaekitError):
    """A dataset file is missing, corrupt, or has the wrong contents."""


class CheckpointError(VaekitError):
    """A run folder or checkpoint is missing, corrupt, or belongs to a different model."""


class TrainingDivergedError(VaekitError):
    """The training loss or its gradient became non-finite."""


class TrainingStopped(VaekitError):
    """Training was stopped by a signal (Ctrl-C, or SIGTERM from a scheduler or `docker stop`) after
    a checkpoint at the current step; `signum` is the signal's number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
