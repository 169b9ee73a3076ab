"""Spies the chunking tests share: how many customers each read held, how many rows each batch had.

Plain functions over `monkeypatch`, importable from the main test run and from the fakesnow
suites (which run in their own virtualenv with this repository on PYTHONPATH).
"""

from __future__ import annotations


def customers_per_read(monkeypatch, session_class) -> list[int]:
    """Distinct customer_ids in each `session_class.read_df` result that has that column, as reads happen."""
    held: list[int] = []
    read_df = session_class.read_df

    def spy(session, sql, params=None):
        df = read_df(session, sql, params)
        if "customer_id" in df.columns:
            held.append(df["customer_id"].nunique())
        return df

    monkeypatch.setattr(session_class, "read_df", spy)
    return held


def rows_per_batch(monkeypatch, warehouse_class) -> list[int]:
    """The length of each DataFrame `warehouse_class.iter_batches` hands out, as they are handed out."""
    sizes: list[int] = []
    iter_batches = warehouse_class.iter_batches

    def spy(warehouse, sql, batch_size=50_000, params=None):
        for batch in iter_batches(warehouse, sql, batch_size, params):
            sizes.append(len(batch))
            yield batch

    monkeypatch.setattr(warehouse_class, "iter_batches", spy)
    return sizes


def work_in_workers(monkeypatch, module) -> list[str]:
    """Make `module` hand its chunks to two worker processes from one customer on (its
    PARALLEL_MIN_CUSTOMERS; two whatever the machine's cores), and list the worker function
    each `mapped_in_workers` call runs."""
    used: list[str] = []
    mapped_in_workers = module.mapped_in_workers

    def spy(work, *args, **kwargs):
        used.append(work.__name__)
        return mapped_in_workers(work, *args, **kwargs)

    monkeypatch.setattr(module, "PARALLEL_MIN_CUSTOMERS", 1)
    monkeypatch.setattr(module, "usable_cores", lambda: 2)
    monkeypatch.setattr(module, "mapped_in_workers", spy)
    return used
