"""The one exception type the package raises for bad input.

Every user-facing problem (a missing file, an empty corpus, a corrupt vocabulary, a bad config key,
a NaN loss) is a `CS336Error` with a one-line message naming the problem. The CLI prints such errors
as `error: <message>` and exits with status 2, without a traceback.
"""


class CS336Error(Exception):
    """A user-facing error: the message alone says what is wrong and what to do."""
