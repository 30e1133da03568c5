"""How a flow run fails: one exception that says whether another attempt may help."""


class FlowFailed(Exception):
    """A flow could not reach its result; transient failures are worth another attempt."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
