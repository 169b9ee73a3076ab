"""`nextbest preview` and `nextbest check-draft`: see a customer's draft, or check any draft.

    nextbest preview --customer C00000042 [--playbook at_risk_save] [--generator openai] [--json]
    nextbest check-draft --context ctx.json --draft draft.json      # JSON verdicts; exit 1 on failure

Both JSON formats are documented in `dagster_project/messaging/README.md`.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import closing, nullcontext
from datetime import date
from pathlib import Path

from dagster_project.messaging.briefs import BriefError, load_briefs
from dagster_project.messaging.context_pack import Catalog, ContextPack, load_catalog, load_context_packs
from dagster_project.project import default_as_of
from dagster_project.messaging.drafting import DraftingPolicy, DraftJob, draft_batch
from dagster_project.messaging.generators.base import Draft, DraftRequest
from dagster_project.messaging.generators.template import TemplateGenerator
from dagster_project.messaging.guardrails import check_draft, passed
from dagster_project.project import DUCKDB_HELP


def _open_warehouse(db: str | None):
    """What the commands read, as a context manager: `--db` (or `NEXTBEST_WAREHOUSE`'s engine) by
    `command_warehouse`'s rule. On DuckDB a read-only connection, so a running pipeline is not blocked.

    Raises ValueError for a DuckDB file named after a NextBest schema.
    """
    from dagster_project.resources.warehouse import DuckDBWarehouse, command_warehouse, connect_duckdb

    warehouse = command_warehouse(db)
    if isinstance(warehouse, DuckDBWarehouse):
        return closing(connect_duckdb(Path(warehouse.path), read_only=True))
    return nullcontext(warehouse)


# The raw tables a context pack and the catalog are read from (`context_pack.py`).
PACK_TABLES = ("customers", "subscriptions", "orders", "order_items", "products", "support_tickets")
CATALOG_TABLES = ("products", "subscriptions")


def _require_raw(source, tables: tuple[str, ...]) -> None:
    """Raise ValueError naming the first of `raw.<tables>` the warehouse does not have yet."""
    from dagster_project.resources.warehouse import session_on

    with session_on(source) as tx:
        for table in tables:
            if not tx.exists("raw", table):
                raise ValueError(f"raw.{table} does not exist yet: load your data (`nextbest import DIR`) or "
                                 "simulate a store (`nextbest simulate`) first")


def _as_of(text: str | None) -> str:
    """The day to read the customer at: --as-of, else NEXTBEST_AS_OF, else today; ValueError naming a bad one
    (`default_as_of` checks the variable)."""
    if not text:
        return default_as_of()
    try:
        date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--as-of {text!r} is not a date; use YYYY-MM-DD, e.g. 2026-06-30") from None
    return text


def _routed_playbook(source, customer_id: str, as_of: str) -> str | None:
    """The playbook routing chose for this customer on `as_of` (what their draft in the batch is), if any."""
    from dagster_project.messaging.assets import ROUTED_PLAYBOOKS_SQL
    from dagster_project.resources.warehouse import session_on

    with session_on(source) as tx:
        if not tx.exists("nextbest", "routing_decisions"):
            return None
        rows = tx.read_df(ROUTED_PLAYBOOKS_SQL + " and customer_id = ?", [date.fromisoformat(as_of), customer_id])
    return str(rows["playbook_id"].iloc[0]) if not rows.empty else None


def _print_pack(pack: ContextPack) -> None:
    print(f"Context pack for {pack.customer_id} ({pack.first_name or 'no first name'}), as of {pack.as_of}: "
          f"tenure {pack.tenure_months} months, writes {pack.tone}")
    for fact in pack.facts.values():
        value = fact.value if fact.kind != "customer_text" else f"[customer text] {str(fact.value)[:70]}"
        print(f"  {fact.id:<48} {value}")


def cmd_preview(args: argparse.Namespace) -> int:
    """Print a customer's context pack and their draft with its verdicts."""
    try:
        briefs = load_briefs(args.briefs)
    except BriefError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        as_of = _as_of(args.as_of)
        for out in (args.context_out, args.draft_out):  # before drafting, not after
            if out and not Path(out).resolve().parent.is_dir():
                raise ValueError(f"{out}: folder {Path(out).resolve().parent} does not exist")
        warehouse = _open_warehouse(args.db)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with warehouse as source:
        try:
            _require_raw(source, PACK_TABLES)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        packs = load_context_packs(source, [args.customer], as_of=as_of)
        catalog = load_catalog(source)
        # Without --playbook: the one routing chose that day, as message_drafts drafts it; else the segment's.
        playbook = args.playbook or _routed_playbook(source, args.customer, as_of)
        chosen_by = "--playbook" if args.playbook else f"routing on {as_of}" if playbook else "their segment"
        if playbook is None:
            from dagster_project.messaging.assets import segment_playbooks
            try:
                playbook = segment_playbooks(source, [args.customer]).get(args.customer)
            except RuntimeError as error:
                print(f"error: {error}; or pass --playbook", file=sys.stderr)
                return 2
    if args.customer not in packs:
        print(f"error: no customer {args.customer!r} in raw.customers (as of {as_of})", file=sys.stderr)
        return 2
    if playbook is None:
        print(f"error: {args.customer} is in no segment with a playbook; pass --playbook", file=sys.stderr)
        return 2
    try:
        brief = briefs.get(playbook)
    except BriefError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    pack = packs[args.customer]
    llm = None
    if args.generator == "openai":
        from dagster_project.messaging.generators.openai_chat import OpenAIGenerator
        llm = OpenAIGenerator()
    outcome = draft_batch([DraftJob(DraftRequest(pack, brief, briefs.brand_voice, catalog))],
                          TemplateGenerator(), llm, DraftingPolicy())[0]
    context = {"playbook": playbook, "context_pack": pack.to_dict(), "catalog": catalog.to_dict()}
    if args.context_out:
        Path(args.context_out).write_text(json.dumps(context, indent=2, default=str))
    if args.draft_out and outcome.draft:
        draft = outcome.draft.to_dict()
        draft.pop("usage", None)
        Path(args.draft_out).write_text(json.dumps(draft, indent=2))
    if args.json:
        print(json.dumps({"context": context, "status": outcome.status, "generator": outcome.generator,
                          "draft": outcome.draft.to_dict() if outcome.draft else None,
                          "verdicts": [v.to_dict() for v in outcome.verdicts], "history": outcome.history},
                         indent=2, default=str))
        return 0
    _print_pack(pack)
    # A preview is in no batch: what reviewers see is what message_drafts stored for the day.
    print(f"\nPlaybook {playbook} (chosen by {chosen_by}) · generator {outcome.generator} · a preview, in no "
          f"batch: as a draft it would be {outcome.status}")
    if outcome.draft:
        d = outcome.draft
        print(f"Subject:   {d.subject}\nPreheader: {d.preheader}\nCTA:       {d.cta}   offer: {d.offer_id}\n")
        print(d.body)
        print(f"\nCited: {', '.join(d.cited_fact_ids)}")
    print("\nVerdicts:")
    for v in outcome.verdicts:
        print(f"  {'pass' if v.passed else 'FAIL'}  {v.check}" + "".join(f"\n        - {r}" for r in v.reasons))
    for reason in outcome.history:
        print(f"  earlier attempt: {reason}")
    return 0


def _load_json(path: str, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such {what} file") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def cmd_check_draft(args: argparse.Namespace) -> int:
    """Check a draft against a context pack; print JSON verdicts; exit 1 when any check fails."""
    try:
        ctx = _load_json(args.context, "context")
        raw_draft = _load_json(args.draft, "draft")
        try:
            pack = ContextPack.from_dict(ctx.get("context_pack", ctx))
        except (TypeError, KeyError, ValueError) as error:
            raise ValueError(f"{args.context}: context_pack is not a context pack ({error})") from None
        for field in ("as_of", "data_fresh_at"):  # the staleness check reads them as dates
            value = getattr(pack, field)
            if field == "as_of" or value is not None:
                try:
                    date.fromisoformat(str(value))
                except ValueError:
                    raise ValueError(f"{args.context}: context_pack.{field} {value!r} is not a date "
                                     "(YYYY-MM-DD)") from None
        try:
            draft = Draft.from_dict(raw_draft)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{args.draft}: {error}") from None
        playbook = args.playbook or ctx.get("playbook")
        if not playbook:
            raise ValueError(f"{args.context}: no playbook; add \"playbook\" or pass --playbook")
        briefs = load_briefs(args.briefs)
        brief = briefs.get(playbook)
        if "catalog" in ctx:
            try:
                catalog = Catalog.from_dict(ctx["catalog"])
            except (TypeError, AttributeError) as error:
                raise ValueError(f"{args.context}: catalog is not a catalog ({error})") from None
        else:
            with _open_warehouse(args.db) as source:
                _require_raw(source, CATALOG_TABLES)
                catalog = load_catalog(source)
    except (ValueError, BriefError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    verdicts = check_draft(draft, pack, brief, briefs.brand_voice, catalog)
    ok = passed(verdicts)
    print(json.dumps({"passed": ok, "customer_id": pack.customer_id, "playbook": playbook,
                      "verdicts": [v.to_dict() for v in verdicts]}, indent=2))
    return 0 if ok else 1


def register(subparsers) -> None:
    """Add `preview` and `check-draft` to the `nextbest` command."""
    db_help = DUCKDB_HELP
    briefs_help = "briefs folder (default: NEXTBEST_BRIEFS_DIR, else the shipped briefs)"

    preview = subparsers.add_parser("preview", help="print a customer's context pack and draft with verdicts")
    preview.add_argument("--customer", required=True, help="customer_id")
    preview.add_argument("--playbook", default=None,
                         help="playbook id (default: the one routing chose for the customer on --as-of, "
                              "else their segment's)")
    preview.add_argument("--generator", choices=("template", "openai"), default="template")
    preview.add_argument("--as-of", default=None, help="YYYY-MM-DD (default NEXTBEST_AS_OF or today)")
    preview.add_argument("--json", action="store_true", help="print JSON instead of text")
    preview.add_argument("--context-out", default=None, help="also write the context JSON (for check-draft)")
    preview.add_argument("--draft-out", default=None, help="also write the draft JSON (for check-draft)")
    preview.add_argument("--briefs", default=None, help=briefs_help)
    preview.add_argument("--db", default=None, help=db_help)
    preview.set_defaults(func=cmd_preview)

    check = subparsers.add_parser("check-draft", help="check a draft against a context pack; exit 1 on failure")
    check.add_argument("--context", required=True, help="context JSON (as written by preview --context-out)")
    check.add_argument("--draft", required=True, help="draft JSON: subject, preheader, body, cta, ...")
    check.add_argument("--playbook", default=None, help="playbook id (default: the context's)")
    check.add_argument("--briefs", default=None, help=briefs_help)
    check.add_argument("--db", default=None, help=f"{db_help}; read for the catalog when the context has none")
    check.set_defaults(func=cmd_check_draft)
