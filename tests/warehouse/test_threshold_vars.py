"""A segment or tag threshold var that is not what it must be fails the build naming the var, instead
of a database error in the middle of the SQL or a segment that silently empties."""

from __future__ import annotations

from datetime import date

import pytest

from tests.warehouse.dbt_warehouse import new_warehouse

AS_OF = date(2026, 6, 1)


# Two cases, one dbt compile each (dbt stops at the first bad var): a range and a rule between vars.
# That good values compile is every other dbt test's build.
@pytest.mark.parametrize("dbt_vars, said", [
    ({"high_ltv_top_share": 10}, "var high_ltv_top_share is 10: expected a number from 0 to 1"),
    ({"cadence_mismatch_min_skips": 5}, "vars cadence_mismatch_min_skips (5) <= cadence_mismatch_max_skips (4)"),
])
def test_a_bad_threshold_names_the_var_and_what_it_must_be(tmp_path_factory, dbt_vars, said):
    warehouse = new_warehouse(tmp_path_factory, "vars")
    result = warehouse.dbt("compile", "--select", "customer_segments", "customer_tags", as_of=AS_OF, dbt_vars=dbt_vars)
    assert result.returncode != 0 and said in result.stdout
