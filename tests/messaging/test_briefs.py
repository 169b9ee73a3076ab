"""Briefs load from YAML, and a marketer's mistake names the file and the field."""

from __future__ import annotations

import shutil

import pytest

from dagster_project.ingest.contract import PLAYBOOKS
from dagster_project.messaging.briefs import BRIEFS_DIR, BriefError, load_briefs


def test_shipped_briefs_cover_every_playbook():
    briefs = load_briefs()
    assert set(briefs.playbooks) == set(PLAYBOOKS)
    assert briefs.brand_voice.store_name
    save = briefs.get("at_risk_save")
    assert save.offer("save15").rules.min_tenure_months == 6
    assert save.cta("keep_subscription") is not None


@pytest.fixture
def briefs_copy(tmp_path):
    folder = tmp_path / "briefs"
    shutil.copytree(BRIEFS_DIR, folder)
    return folder


def test_env_var_points_at_another_folder(briefs_copy, monkeypatch):
    (briefs_copy / "onboarding.yaml").unlink()
    monkeypatch.setenv("NEXTBEST_BRIEFS_DIR", str(briefs_copy))
    assert "onboarding" not in load_briefs().playbooks


def test_offer_above_its_price_rule_names_file_and_field(briefs_copy):
    path = briefs_copy / "at_risk_save.yaml"
    path.write_text(path.read_text().replace("    percent_off: 15\n", "    percent_off: 40\n", 1))
    with pytest.raises(BriefError) as error:
        load_briefs(briefs_copy)
    message = str(error.value)
    assert "at_risk_save.yaml" in message
    assert "offers[0]" in message and "max_percent_off" in message


def test_typo_and_wrong_type_are_both_reported(briefs_copy):
    path = briefs_copy / "win_back.yaml"
    path.write_text(path.read_text().replace("holdout_share: 0.15", "holdout_share: lots\nchanel: email"))
    with pytest.raises(BriefError) as error:
        load_briefs(briefs_copy)
    message = str(error.value)
    assert "win_back.yaml: holdout_share" in message
    assert "win_back.yaml: chanel" in message


def test_brand_voice_problems_name_the_voice_file(briefs_copy):
    path = briefs_copy / "brand_voice.yaml"
    path.write_text(path.read_text().replace("max_exclamations: 1", "max_exclamations: -1"))
    with pytest.raises(BriefError, match=r"brand_voice.yaml: max_exclamations"):
        load_briefs(briefs_copy)


def test_unknown_playbook_is_a_clear_error():
    with pytest.raises(BriefError, match="no brief for playbook 'nope'"):
        load_briefs().get("nope")


def new_brief(folder, goal_line: str = "") -> None:
    """A marketer's own playbook: the expansion brief under a new id, with `goal_line` before its channel."""
    text = (folder / "expansion.yaml").read_text().replace("id: expansion", "id: loyal_refill", 1)
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("channel:"))
    (folder / "loyal_refill.yaml").write_text("".join(lines[:at]) + goal_line + "".join(lines[at:]))


def test_a_new_playbook_names_its_goal_a_seed_one_may_leave_it_out(briefs_copy):
    new_brief(briefs_copy, "goal: addon_30d\n")
    briefs = load_briefs(briefs_copy)
    assert (briefs.get("loyal_refill").goal, briefs.get("loyal_refill").goal_days) == ("addon_30d", 30)
    assert (briefs.get("at_risk_save").goal, briefs.get("at_risk_save").goal_days) == ("retained_60d", 60)


@pytest.mark.parametrize("goal_line, expected", [
    ("", "loyal_refill.yaml: goal: a new playbook needs a goal"),
    ("goal: more_coffee\n", "loyal_refill.yaml: goal: Value error, 'more_coffee' is not a goal; one of retained_60d"),
])
def test_a_new_playbook_without_a_known_goal_names_file_and_field(briefs_copy, goal_line, expected):
    new_brief(briefs_copy, goal_line)
    with pytest.raises(BriefError) as error:
        load_briefs(briefs_copy)
    assert expected in str(error.value)


def test_service_briefs_in_the_folder_serve_their_flows_and_are_not_routed(briefs_copy):
    from dagster_project.service.replies import REPLY_BRIEF_FILE, load_reply_brief
    from dagster_project.service.save_offers import SAVE_BRIEF_FILE, load_save_brief

    shutil.copy(SAVE_BRIEF_FILE, briefs_copy / "save_offer.yaml")
    reply = REPLY_BRIEF_FILE.read_text().replace("name: ", "name: Our own ", 1)
    (briefs_copy / "service_reply.yaml").write_text(reply)
    briefs = load_briefs(briefs_copy)
    assert set(briefs.service) == {"save_offer", "service_reply"}
    assert not set(briefs.service) & set(briefs.playbooks)  # no goal needed: not a campaign
    assert load_save_brief(briefs_copy) == briefs.service["save_offer"]
    assert load_reply_brief(briefs_copy).name.startswith("Our own ")


@pytest.mark.parametrize("old, new, expected", [
    ("    label: Adjust my deliveries", "    label: '  '", "at_risk_save.yaml: ctas[0].label"),
    ("    url: /account/subscription", "    url: javascript:alert(1)",
     "at_risk_save.yaml: ctas[0].url: Value error, 'javascript:alert(1)' is not a link a message may carry"),
])
def test_an_empty_cta_label_or_a_url_no_message_may_carry_names_file_and_field(briefs_copy, old, new, expected):
    path = briefs_copy / "at_risk_save.yaml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(BriefError) as error:
        load_briefs(briefs_copy)
    assert expected in str(error.value)
