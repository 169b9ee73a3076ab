"""Reading a transaction log for the CLV backtest, with errors a user can act on.

Any CSV or Parquet file with one row per order: the user names the customer,
date and amount columns. Problems name the file, the column, the row (the
line of a CSV, counting the header as line 1) and the value found.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

SHOWN_PROBLEMS = 5  # bad rows quoted in an error; the rest are counted


class ClvInputError(ValueError):
    """The transaction log or the backtest options cannot be used as given."""


def read_transaction_file(path: str | Path, customer: str, date: str, amount: str) -> pd.DataFrame:
    """Load FILE and return the clean log: customer_id, date (UTC, naive), amount."""
    path = Path(path)
    if not path.is_file():
        raise ClvInputError(f"{path}: no such file")
    suffixes = "".join(path.suffixes).lower()
    wanted = [customer, date, amount]
    try:
        if suffixes.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            available = pq.read_schema(path).names
            _check_columns(path, wanted, available)
            raw = pd.read_parquet(path, columns=list(dict.fromkeys(wanted)))
            row_name = "row {}".format
            first_row = 1
        elif ".csv" in suffixes or ".txt" in suffixes:
            available = list(pd.read_csv(path, nrows=0).columns)
            _check_columns(path, wanted, available)
            raw = pd.read_csv(path, usecols=list(dict.fromkeys(wanted)), dtype={customer: str, date: str, amount: str},
                              keep_default_na=False, na_values=[""])
            row_name = "line {}".format
            first_row = 2  # line 1 is the header
        else:
            raise ClvInputError(f"{path}: expected a .csv or .parquet file")
    except (OSError, ValueError, pd.errors.ParserError) as error:
        if isinstance(error, ClvInputError):
            raise
        raise ClvInputError(f"{path}: could not be read ({error})") from error
    return clean_transactions(raw, customer, date, amount, source=str(path),
                              row_label=lambda i: row_name(i + first_row))


def clean_transactions(raw: pd.DataFrame, customer: str, date: str, amount: str, source: str = "the data",
                       row_label=lambda i: f"row {i + 1}") -> pd.DataFrame:
    """Check and convert the three columns; raise ClvInputError naming bad rows.

    `row_label(i)` names the i-th row (0-based) as the user sees it.
    """
    _check_columns(source, [customer, date, amount], list(raw.columns))
    ids = raw[customer]
    missing_id = ids.isna() | ids.astype(str).str.strip().eq("")
    _raise_if_any(missing_id, ids, source, customer, "is empty; every order needs a customer", row_label)

    dates = _parse_dates(raw[date])
    _raise_if_any(dates.isna(), raw[date], source, date,
                  "could not be read as a date; use e.g. 2024-03-31 or 2024-03-31T14:05:00Z", row_label)

    amounts = raw[amount]
    if not pd.api.types.is_numeric_dtype(amounts):
        amounts = pd.to_numeric(amounts.astype(str).str.strip(), errors="coerce")
    _raise_if_any(amounts.isna(), raw[amount], source, amount,
                  "is not a number; use plain numbers like 12.50 (no currency signs)", row_label)
    return pd.DataFrame({"customer_id": ids.astype(str).to_numpy(), "date": dates.to_numpy(),
                         "amount": amounts.astype(float).to_numpy()})


def parse_cutoff(text: str) -> pd.Timestamp:
    """The --cutoff date (YYYY-MM-DD); the whole day belongs to the history."""
    # Only the ISO order: pandas would read 05/02/2024 as May 2nd, which half the world writes as February 5th.
    iso = re.match(r"\d{4}-\d{2}-\d{2}", str(text).strip())
    try:
        moment = pd.Timestamp(text) if iso else pd.NaT
    except (ValueError, TypeError):
        moment = pd.NaT
    if pd.isna(moment):
        raise ClvInputError(f"--cutoff {text!r} is not a date; use YYYY-MM-DD, e.g. 2024-06-30")
    if moment.tzinfo is not None:
        moment = moment.tz_convert("UTC").tz_localize(None)
    return moment.normalize()


def check_cutoff(transactions: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int) -> list[str]:
    """Raise if the cutoff leaves no history or no future; return warnings otherwise."""
    first, last = transactions["date"].min().normalize(), transactions["date"].max().normalize()
    span = f"the data runs from {first.date()} to {last.date()}"
    if cutoff < first or cutoff >= last:
        raise ClvInputError(f"--cutoff {cutoff.date()} is outside the data: {span}; "
                            "choose a cutoff in between that leaves the horizon after it")
    end = cutoff + pd.Timedelta(days=horizon_days)
    if last < end:
        observed = (last - cutoff).days
        return [f"{span}, so only {observed} of the {horizon_days} horizon days after the cutoff are observed "
                f"and actual purchases are undercounted; choose --cutoff {(last - pd.Timedelta(days=horizon_days)).date()} "
                f"or earlier, or --horizon-days {observed}"]
    return []


def _check_columns(source, wanted: list[str], available: list[str]) -> None:
    missing = [c for c in dict.fromkeys(wanted) if c not in available]
    if missing:
        raise ClvInputError(f"{source}: no column {', '.join(repr(c) for c in missing)}; "
                            f"the columns are: {', '.join(map(str, available))}")


def _parse_dates(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        text = values.astype("string").str.strip()
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        retry = parsed.isna() & text.notna()
        if retry.any():  # other spellings (31 Mar 2024, 03/31/2024, ...) parsed one by one
            parsed[retry] = pd.to_datetime(text[retry], errors="coerce", utc=True, format="mixed")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed


def _raise_if_any(bad: pd.Series, values: pd.Series, source: str, column: str, problem: str, row_label) -> None:
    positions = bad.to_numpy().nonzero()[0]
    if len(positions) == 0:
        return
    shown = "; ".join(f"{row_label(int(i))}: {values.iloc[i]!r}" for i in positions[:SHOWN_PROBLEMS])
    more = f" (and {len(positions) - SHOWN_PROBLEMS} more)" if len(positions) > SHOWN_PROBLEMS else ""
    raise ClvInputError(f"{source}: column {column!r} {problem}. {shown}{more}")
