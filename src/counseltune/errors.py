"""The one error type of the project: an expected failure the user can fix.

Raise a CounseltuneError (or a subclass) for bad input, bad params, missing files and the like; its message is
one line saying what went wrong, where (file, key path, row) and what to do. `counseltune` prints it as
`counseltune <stage>: error: <message>` with no traceback. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class CounseltuneError(Exception):
    """An expected, user-fixable failure. The first line of str(err) says what, where and what to do; further
    lines may list details (the failed schema keys, the top quarantine reasons with example records)."""
