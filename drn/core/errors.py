"""The errors users see: one line that names the file or setting, and the CLI's exit code."""


class DrnError(Exception):
    """Base of every error the ``drn`` command reports as ``drn: error: <message>``."""

    exit_code = 1


class DataError(DrnError):
    """Bad input data: an unreadable image, sizes that cannot match, an empty folder."""

    exit_code = 1


class UsageError(DrnError):
    """A bad argument or setting: a missing folder, an unknown model or scale."""

    exit_code = 2


class HeldError(DrnError):
    """A run directory another live process trains: refused, to try again once it is free."""

    exit_code = 75  # EX_TEMPFAIL


class BehindError(DrnError):
    """A run behind the number its milestone should reach, with ``train.stop_if_behind``."""

    exit_code = 3
