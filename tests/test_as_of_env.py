"""NEXTBEST_AS_OF is checked in one place, `default_as_of`: the assets get the same clear error as the commands."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from dagster_project.cli import main
from dagster_project.models.propensity_assets import run_as_of
from dagster_project.project import default_as_of
from tests.messaging.store import AS_OF, write_store


@pytest.mark.parametrize("bad", ["31-05-2026", "2026-13-01", "yesterday"])
def test_a_bad_as_of_names_the_variable_and_the_value(monkeypatch, bad):
    monkeypatch.setenv("NEXTBEST_AS_OF", bad)
    with pytest.raises(ValueError, match=f"NEXTBEST_AS_OF='{bad}' is not a date; use YYYY-MM-DD"):
        default_as_of()
    with pytest.raises(ValueError, match="NEXTBEST_AS_OF="):  # an asset's as-of date, not 'Invalid isoformat string'
        run_as_of()


def test_a_good_as_of_is_the_day_and_none_is_today(monkeypatch):
    monkeypatch.setenv("NEXTBEST_AS_OF", "2026-06-30")
    assert default_as_of() == "2026-06-30"
    assert run_as_of() == dt.date(2026, 6, 30)
    monkeypatch.setenv("NEXTBEST_AS_OF", "")
    assert default_as_of() == dt.datetime.now(dt.timezone.utc).date().isoformat()


def test_preview_with_as_of_given_does_not_read_the_variable(tmp_path, monkeypatch, capsys):
    path = tmp_path / "store.duckdb"
    con = duckdb.connect(str(path))
    write_store(con)
    con.close()
    monkeypatch.setenv("NEXTBEST_AS_OF", "31-05-2026")
    assert main(["preview", "--customer", "C001", "--playbook", "win_back", "--as-of", AS_OF,
                 "--db", str(path)]) == 0
    assert "NEXTBEST_AS_OF" not in capsys.readouterr().err


def test_the_freshness_anomaly_and_dbt_readers_name_a_bad_variable_too(monkeypatch):
    from dagster_project.quality.anomalies import reference_day
    from dagster_project.quality.freshness import reference_time
    from dagster_project.warehouse.assets import dbt_vars

    monkeypatch.setenv("NEXTBEST_AS_OF", "2026-13-01")
    for reader in (reference_time, reference_day, dbt_vars):
        with pytest.raises(ValueError, match="NEXTBEST_AS_OF='2026-13-01' is not a date"):
            reader()
    monkeypatch.setenv("NEXTBEST_AS_OF", "2026-06-30")
    assert reference_time() == dt.datetime(2026, 6, 30) and reference_day() == dt.date(2026, 6, 29)
    assert '"as_of": "2026-06-30"' in dbt_vars()[1]
