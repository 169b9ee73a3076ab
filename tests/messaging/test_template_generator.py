"""The template generator writes copy a subscriber would recognise as about them."""

from __future__ import annotations

import dataclasses

from dagster_project.messaging.generators.base import DraftRequest
from dagster_project.messaging.generators.template import TemplateGenerator, suggested_cadence
from dagster_project.messaging.guardrails import check_draft, passed

GEN = TemplateGenerator()


def _draft(packs, briefs, catalog, customer, playbook, pack=None):
    return GEN.generate(DraftRequest(pack or packs[customer], briefs.get(playbook), briefs.brand_voice, catalog))


def test_references_the_customer_s_real_situation(packs, briefs, catalog):
    draft = _draft(packs, briefs, catalog, "C001", "cadence_mismatch")
    assert draft.body.startswith("Hi Anna,")
    assert "3 of your last 6 deliveries" in draft.body  # her actual skips
    assert "every 56 days" in draft.body  # 3 of 6 skipped on a 28-day cycle: twice as long
    assert "March 12" in draft.body  # anticipates "when is my next one?"
    assert draft.cta == "change_cadence"
    assert {"customer:C001:recent_skips", "subscription:S001:next_charge_at"} <= set(draft.cited_fact_ids)


def test_recognises_tenure(packs, briefs, catalog):
    loyal = _draft(packs, briefs, catalog, "C001", "high_ltv_recovery")
    assert "January 2024" in loyal.body + loyal.preheader
    newcomer = _draft(packs, briefs, catalog, "C002", "onboarding")
    assert "January 2024" not in newcomer.body


def test_brief_writers_get_brief_copy_and_warm_writers_warm(packs, briefs, catalog):
    warm = _draft(packs, briefs, catalog, "C001", "re_engagement")
    brief_pack = dataclasses.replace(packs["C001"], tone="brief")
    brief = _draft(packs, briefs, catalog, "C001", "re_engagement", pack=brief_pack)
    assert len(brief.body.split()) < len(warm.body.split()) * 0.7
    assert len(brief.body.split()) <= briefs.brand_voice.max_words_brief
    assert "reply" in warm.body.lower()


def test_offers_only_to_customers_the_price_rules_allow(packs, briefs, catalog):
    anna = _draft(packs, briefs, catalog, "C001", "at_risk_save")  # 25 months
    ben = _draft(packs, briefs, catalog, "C002", "at_risk_save")  # a few weeks
    assert anna.offer_id == "save15" and "15% off" in anna.body
    assert ben.offer_id is None and "%" not in ben.body


def test_wording_varies_across_a_batch_but_not_between_runs(packs, briefs, catalog):
    drafts = [
        _draft(packs, briefs, catalog, None, "at_risk_save",
               pack=dataclasses.replace(packs["C001"], customer_id=f"C9{n:04d}"))
        for n in range(60)
    ]
    assert len({d.subject for d in drafts}) >= 3
    assert len({d.body for d in drafts}) >= 6
    again = _draft(packs, briefs, catalog, None, "at_risk_save",
                   pack=dataclasses.replace(packs["C001"], customer_id="C90007"))
    assert again == drafts[7]


def test_longer_cycle_suggestion():
    assert suggested_cadence(28, 3, 6, (14, 21, 28, 42, 56)) == 56
    assert suggested_cadence(28, 2, 6, (14, 21, 28, 42, 56)) == 42
    assert suggested_cadence(56, 3, 6, (14, 21, 28, 42, 56)) is None


def test_an_angle_without_a_template_uses_the_generic_one(packs, briefs, catalog):
    brief = briefs.get("onboarding")
    renamed = brief.model_copy(update={"angles": [brief.angles[0].model_copy(update={"id": "brand_new_angle"})]})
    draft = GEN.generate(DraftRequest(packs["C002"], renamed, briefs.brand_voice, catalog))
    assert draft.angle == "brand_new_angle" and "Ridge Espresso" in draft.body


def test_prices_are_written_in_the_brand_voice_s_currency(packs, briefs, catalog):
    pounds = briefs.brand_voice.model_copy(update={"currency_symbol": "£"})
    texts = []
    for brief in briefs.playbooks.values():
        for pack in packs.values():
            draft = GEN.generate(DraftRequest(pack, brief, pounds, catalog))
            assert passed(check_draft(draft, pack, brief, pounds, catalog)), (brief.id, pack.customer_id, draft.body)
            texts.append(draft.text())
    assert any("£14.40" in t for t in texts) and any("£59.00" in t for t in texts)  # a plan's and a catalog price
    assert not any("$" in t for t in texts)


def test_a_changed_template_is_a_new_generator_version(tmp_path):
    # The version is in the draft cache key: drafts cached under the old wording must not be served.
    import shutil

    from dagster_project.messaging.generators.template import TEMPLATES_DIR, TemplateGenerator

    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, folder)
    before = TemplateGenerator(folder).version
    assert TemplateGenerator(folder).version == before  # stable from run to run
    welcome = folder / "welcome_first_delivery.j2"
    welcome.write_text(welcome.read_text().replace("We're glad you're here.", "Glad to have you."))
    assert TemplateGenerator(folder).version != before
