"""The one error type for input that cannot be used."""


class InputError(Exception):
    """A file that cannot be read as what it claims to be.

    The message always starts with the file's path, then says what is wrong,
    so a log line or a run report names both.
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
