"""The one exception type for mistakes a user can make (bad path, bad argument, prompt too long)."""


class GorgonError(Exception):
    """A problem the user can fix. The message says what went wrong and what to do about it.

    The CLI prints it without a traceback and exits with status 2; the server turns it into a 400.
    `param` names the offending argument where there is one (OpenAI's error shape has that field).
    """

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param
