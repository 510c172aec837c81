"""The one error kiu.api raises, so callers at the edge map a single type."""


class ParseError(ValueError):
    """Input from outside kiu (a resource body, an ARN) is malformed.

    ``message`` names the offending field and says what is expected, ready for a
    status message, a Kubernetes Event or an InvalidParameterException.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
