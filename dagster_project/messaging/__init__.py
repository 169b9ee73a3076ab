"""Messaging: campaign briefs, customer context packs, draft generators and guardrails.

    briefs.py        YAML briefs + brand voice, validated on load
    context_pack.py  customer-visible facts with stable ids (from raw.*)
    generators/      one interface: `template` (default, offline) and `openai`
    guardrails.py    checks every draft against the pack, the catalog and the brief
    drafting.py      generate -> check -> retry with feedback -> template -> blocked; cache
    assets.py        the `message_drafts` asset (group `messaging`)
    commands.py      `nextbest preview` and `nextbest check-draft`
"""
