"""Rows of a source-contract table as a DataFrame with the contract's column types, for tests that
load a small store into either engine."""

from __future__ import annotations

import pandas as pd

from dagster_project.ingest import contract


def contract_frame(table: str, rows: list[tuple]) -> pd.DataFrame:
    """`rows` of contract table `table`; nullable integers stay integers and timestamps stay
    timestamps, whatever their blanks (so both engines get the same column types)."""
    columns = contract.TABLES[table].columns
    df = pd.DataFrame(rows, columns=[c.name for c in columns])
    for col in columns:
        if col.type == "INTEGER":
            df[col.name] = df[col.name].astype("Int64")
        elif col.type == contract.TS:
            df[col.name] = pd.to_datetime(df[col.name])
    return df
