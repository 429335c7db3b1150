"""Cutoffs typed on the command line: ISO only, so that 01/03/1998 is never silently read as 3 January.

pandas reads "01/03/1998" month first and "31/03/1998" day first; a European user typing either gets
a different day than meant, without a word. Every `--cutoff`/`--cutoffs` goes through `parse_cutoff`.
"""

from __future__ import annotations

import re
from datetime import datetime

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?")


def parse_cutoff(text: str, flag: str = "--cutoff", end_of_day: bool = False) -> datetime:
    """An ISO date or date-time as naive UTC; `end_of_day` makes a bare date its last second.

    Raises:
        ValueError: not ISO (the message names the flag, the value and the form to write).
    """
    import pandas as pd

    value = str(text).strip()
    if not _ISO.fullmatch(value):
        raise ValueError(f"{flag} {text!r} is not a date in ISO form: write YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (UTC), "
                         "e.g. 1998-03-31; a form like 01/03/1998 could mean 1 March or 3 January")
    try:
        ts = pd.Timestamp(value)
    except ValueError:
        raise ValueError(f"{flag} {text!r}: not a real date/time; write YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS") from None
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    if end_of_day and len(value) == 10:  # a bare date means the end of that day
        ts = ts + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
    return ts.to_pydatetime()
