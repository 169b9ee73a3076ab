"""`campaign_performance` measures each playbook against the goal its brief names, a new one too:
the dbt build gets var `campaign_goals` from the briefs."""

from __future__ import annotations

import ast
import json
import re
import shutil
from datetime import date

from dagster_project.messaging.briefs import BRIEFS_DIR
from dagster_project.warehouse.assets import dbt_vars
from tests.warehouse.dbt_warehouse import DBT_DIR, new_warehouse

MODEL = DBT_DIR / "models" / "intermediate" / "int_campaign_outcomes.sql"


def goals_var() -> dict:
    args = dbt_vars()
    return json.loads(args[args.index("--vars") + 1])["campaign_goals"]


def own_briefs(tmp_path, monkeypatch, goal: str):
    """The shipped briefs plus a marketer's `loyal_refill` playbook aiming for `goal`."""
    folder = tmp_path / "briefs"
    shutil.copytree(BRIEFS_DIR, folder)
    text = (folder / "expansion.yaml").read_text().replace("id: expansion", "id: loyal_refill", 1)
    (folder / "loyal_refill.yaml").write_text(text.replace("\nchannel:", f"\ngoal: {goal}\nchannel:", 1))
    monkeypatch.setenv("NEXTBEST_BRIEFS_DIR", str(folder))


def test_the_shipped_briefs_give_the_models_own_default_goals(monkeypatch):
    monkeypatch.delenv("NEXTBEST_BRIEFS_DIR", raising=False)
    default = re.search(r"var\('campaign_goals', (\{.*?\n\})\)", MODEL.read_text(), re.S).group(1)
    assert goals_var() == ast.literal_eval(default)


def test_a_new_playbook_is_measured_against_its_briefs_goal(tmp_path, monkeypatch, tmp_path_factory):
    own_briefs(tmp_path, monkeypatch, "login_30d")
    assert goals_var()["loyal_refill"] == {"goal": "login", "window_days": 30}

    warehouse = new_warehouse(tmp_path_factory, "goals")
    result = warehouse.dbt("compile", "--select", "int_campaign_outcomes", as_of=date(2026, 6, 1),
                           dbt_vars={"campaign_goals": goals_var()})
    assert result.returncode == 0, result.stdout[-4000:]
    compiled = next((warehouse.work_dir / "target").rglob("int_campaign_outcomes.sql")).read_text()
    refill = re.search(r"'loyal_refill' as \w+\) as playbook_id,\s*cast\('(\w+)' as \w+\) as goal_kind,\s*"
                       r"cast\((\d+) as \w+\) as goal_window_days", compiled)
    assert refill and refill.groups() == ("login", "30")


def test_briefs_that_do_not_load_leave_dbt_its_default_goals(tmp_path, monkeypatch):
    own_briefs(tmp_path, monkeypatch, "more_coffee")
    assert "campaign_goals" not in " ".join(dbt_vars())
