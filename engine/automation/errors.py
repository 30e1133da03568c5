"""How a flow run fails: one exception that says whether another attempt may help."""


class FlowFailed(Exception):
    """A flow could not reach its result.

    Transient failures are worth another attempt; `needs_human` ones (a CAPTCHA, an email
    verification, an expired password) wait for a person; `refused` ones are a sign-in the
    app turned down, which the integration's breaker counts; the rest are permanent.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        needs_human: bool = False,
        refused: bool = False,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.needs_human = needs_human
        self.refused = refused
