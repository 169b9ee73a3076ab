"""The data-quality checks as Dagster asset checks, built from the suites in `expectations/`.

Per suite, one check op validates the table and reports up to two checks on its
asset: `blocking_expectations` (ERROR, `blocking=True`: assets downstream of a
failing table do not materialize in that run) and `warning_expectations` (WARN).
Anomaly checks watch event volume and segment sizes; freshness checks on the raw
assets take their limits from dbt's source freshness. Every check and the summary read
through the warehouse resource's engine-neutral methods, so they run on DuckDB and on
Snowflake alike; each opens its own transaction and closes it when done (DuckDB allows
one writer per file). The resource parameters are annotated `DuckDBWarehouse` for Dagster's
resource key only: `definitions.py` binds whichever engine `NEXTBEST_WAREHOUSE` names.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from datetime import timedelta
from typing import Callable, Iterable

import dagster as dg

from dagster_project.project import run_memo
from dagster_project.quality import anomalies
from dagster_project.quality.freshness import dbt_source_freshness
from dagster_project.quality.outcomes import Outcome
from dagster_project.quality.runner import SuiteResult, validate_suite
from dagster_project.quality.suites import Suite, load_anomaly_config, load_suites
from dagster_project.quality.summary import collect_outcomes, headline, render_markdown
from dagster_project.resources.warehouse import DuckDBWarehouse, WarehouseInterface

CHECK_NAMES = {"ERROR": "blocking_expectations", "WARN": "warning_expectations"}
# The run's memo (`run_memo`) key of its suite checks' results: suite file -> result.
# `data_quality_summary` reports these instead of validating the same tables again (at 1M
# customers the raw suites are most of its time).
VALIDATED = "validated_suites"


def remember_validated(run_id: str, result: SuiteResult) -> None:
    """Keep a suite check's result for the summary of the same run."""
    run_memo(run_id).setdefault(VALIDATED, {})[result.suite.path] = result


def validated_in_run(run_id: str, suites: Iterable[Suite]) -> dict:
    """Suite file -> result, for those of `suites` a check of run `run_id` validated in this process."""
    done = run_memo(run_id).get(VALIDATED, {})
    return {s.path: done[s.path] for s in suites if s.path in done}


def check_result(asset_key: dg.AssetKey, check_name: str, severity: str, outcomes: list[Outcome],
                 title: str, extra: dict | None = None) -> dg.AssetCheckResult:
    """One Dagster check result from outcomes: fails when any failed; markdown summary and examples as metadata."""
    failing = [o for o in outcomes if o.failed]
    metadata = {
        "summary": dg.MetadataValue.md(render_markdown(outcomes, title)),
        "failing_checks": dg.MetadataValue.json([o.to_dict() for o in failing]),
        "checks_evaluated": len(outcomes),
        "checks_failed": len(failing),
        **(extra or {}),
    }
    description = ("; ".join(f"{o.name}: {o.message}" for o in failing[:5]) if failing else headline(outcomes))
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=check_name, passed=not failing, metadata=metadata,
        severity=dg.AssetCheckSeverity.ERROR if severity == "ERROR" else dg.AssetCheckSeverity.WARN,
        description=description[:2000],
    )


def _error_outcome(target: str, error: Exception) -> Outcome:
    return Outcome(target, "check_ran", "ERROR", "failed", f"the check could not run: {error}",
                   "Make sure the warehouse is reachable (the DuckDB file exists and is not being rebuilt, "
                   "or the SNOWFLAKE_* settings are right), then rerun.")


def build_suite_checks(suite: Suite) -> dg.AssetChecksDefinition:
    """The asset checks of one suite: one op, one check per severity present in the suite."""
    asset_key = dg.AssetKey(list(suite.asset))
    severities = [s for s in ("ERROR", "WARN") if s in suite.severities]
    specs = [dg.AssetCheckSpec(CHECK_NAMES[s], asset=asset_key, blocking=(s == "ERROR"),
                               description=f"{'Blocking' if s == 'ERROR' else 'Warning'} expectations of "
                                           f"{suite.path.relative_to(suite.path.parents[1])}")
             for s in severities]

    @dg.multi_asset_check(specs=specs, name=f"quality_{'_'.join(suite.asset)}",
                          description=f"Great Expectations suite {suite.name} (v{suite.version}).")
    def _suite_check(context, warehouse: DuckDBWarehouse):
        try:
            result = validate_suite(warehouse, suite)  # DuckDB or Snowflake, through the warehouse's read_df
            outcomes, rows = result.outcomes, result.row_count
        except Exception as error:  # noqa: BLE001 - reported as a failed blocking check
            outcomes, rows = [_error_outcome(suite.tables[0], error)], 0
        else:
            remember_validated(context.run.run_id, result)
        for severity in severities:
            mine = [o for o in outcomes if o.severity == severity]
            yield check_result(asset_key, CHECK_NAMES[severity], severity, mine,
                               f"{suite.name}: {severity} expectations",
                               {"suite_file": dg.MetadataValue.path(str(suite.path)), "rows": rows})

    return _suite_check


def _anomaly_check(name: str, specs: list[dg.AssetCheckSpec], run: Callable[[WarehouseInterface], list[Outcome]],
                   severity: str, description: str) -> dg.AssetChecksDefinition:
    """An anomaly check op: `run(warehouse)` returns outcomes, grouped per spec by the asset they watch."""
    keys = {spec.asset_key.to_user_string(): spec for spec in specs}

    @dg.multi_asset_check(specs=specs, name=name, description=description)
    def _check(warehouse: DuckDBWarehouse):
        try:
            outcomes = run(warehouse)
        except Exception as error:  # noqa: BLE001
            outcomes = [_error_outcome(next(iter(keys)), error)]
        grouped: dict[str, list[Outcome]] = defaultdict(list)
        for o in outcomes:
            key = o.target.replace(".", "/") if o.target.replace(".", "/") in keys else \
                o.target.split(".")[-1] if o.target.split(".")[-1] in keys else next(iter(keys))
            grouped[key].append(o)
        for key, spec in keys.items():
            yield check_result(spec.asset_key, spec.name, severity, grouped.get(key, []), f"{spec.name} on {key}")

    return _check


def build_event_volume_checks(config: dict | None = None) -> dg.AssetChecksDefinition:
    """`daily_volume` on each raw event source: the last complete day against the trailing median."""
    config = config or load_anomaly_config()["event_volume"]
    blocking = config["severity"] == "ERROR"
    specs = [dg.AssetCheckSpec("daily_volume", asset=dg.AssetKey(["raw", source]), blocking=blocking,
                               description=f"Rows on the last complete day at least {config['min_share_of_median']:.0%} "
                                           f"of the trailing {config['trailing_days']}-day median.")
             for source in config["sources"]]
    return _anomaly_check("quality_event_volume", specs, lambda warehouse: anomalies.event_volume(warehouse, config),
                          config["severity"], "Event volume anomaly per raw source (expectations/anomalies.yml).")


def build_segment_change_check(config: dict | None = None) -> dg.AssetChecksDefinition:
    """`segment_size_change` on customer_segments: no segment grows or shrinks past the factor overnight."""
    config = config or load_anomaly_config()["segment_change"]
    spec = dg.AssetCheckSpec("segment_size_change", asset=dg.AssetKey("customer_segments"),
                             blocking=config["severity"] == "ERROR",
                             description=f"No segment changes size by more than x{config['max_factor']} overnight.")
    return _anomaly_check("quality_segment_change", [spec],
                          lambda warehouse: anomalies.segment_change(warehouse, config),
                          config["severity"], "Segment size anomaly against customer_segment_history.")


def build_score_shift_check(asset_key: dg.AssetKey = dg.AssetKey("customer_scores"),
                            config: dict | None = None) -> dg.AssetChecksDefinition:
    """`score_distribution_shift` on the scores asset: PSI per propensity against the model version's reference.

    Writes as well as reads: it records a new model version's first scores as its reference."""
    config = config or load_anomaly_config()["score_shift"]
    spec = dg.AssetCheckSpec("score_distribution_shift", asset=asset_key, blocking=config["severity"] == "ERROR",
                             description=f"Score PSI against the training window at most {config['max_psi']}.")
    return _anomaly_check("quality_score_shift", [spec],
                          lambda warehouse: anomalies.score_shift(warehouse, config, record=True),
                          config["severity"], "Score distribution shift against each model version's first scores.")


def build_freshness_checks() -> list[dg.AssetChecksDefinition]:
    """Dagster freshness checks on the raw assets, one group per dbt `error_after` limit."""
    by_limit: dict[timedelta, list[dg.AssetKey]] = defaultdict(list)
    for source, levels in dbt_source_freshness().items():
        if "error" in levels:
            by_limit[levels["error"]].append(dg.AssetKey(["raw", source]))
    checks: list[dg.AssetChecksDefinition] = []
    # Superseded in 1.13 by FreshnessPolicy on the asset specs (owned by ingest/assets.py); these
    # checks still run and honour `dagster/last_updated_timestamp` (the data's time) when reported.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dg.SupersessionWarning if hasattr(dg, "SupersessionWarning")
                              else Warning)
        for limit, keys in sorted(by_limit.items()):
            checks.extend(dg.build_last_update_freshness_checks(assets=keys, lower_bound_delta=limit))
    return checks


def suites_for(prefixes: Iterable[str]) -> list[Suite]:
    """The suites whose table lives in one of the schemas `prefixes` (`raw`, `analytics`, ...)."""
    return [s for s in load_suites() if s.tables[0].split(".")[0] in tuple(prefixes)]


raw_suite_checks = [build_suite_checks(s) for s in suites_for(["raw"])]
customer_context_checks = [build_suite_checks(s) for s in load_suites() if s.asset == ("customer_context",)]
anomaly_checks = [build_event_volume_checks(), build_segment_change_check()]
freshness_checks = build_freshness_checks()

# Checks on assets other stages are still building; wire each once its asset is in the Definitions.
message_drafts_checks = [build_suite_checks(s) for s in load_suites() if s.asset == ("message_drafts",)]
customer_scores_checks = [build_suite_checks(s) for s in load_suites() if s.asset == ("customer_scores",)] + [
    build_score_shift_check()]

asset_checks = [*raw_suite_checks, *customer_context_checks, *anomaly_checks, *freshness_checks]



# The suites of the tables the summary runs after: their checks' results in the run are still true.
SUMMARY_AFTER_SUITES = [*suites_for(["raw"]), *[s for s in load_suites() if s.asset == ("customer_context",)]]


@dg.asset(
    group_name="measurement",
    # After the loads and customer_context so it describes today's data. A failing blocking
    # check on those skips it in that run (Dagster's blocking); the check's own summary and
    # `nextbest doctor` still say what failed.
    deps=[*{dg.AssetKey(list(s.asset)) for s in SUMMARY_AFTER_SUITES}],
    description="Every data-quality check on the warehouse, its status and what to do about a failure "
                "(the same evaluation as `nextbest doctor`), as markdown metadata. Never fails.",
)
def data_quality_summary(context, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Run the whole suite (reads only) and attach the markdown summary; a check that cannot run is reported.

    The suites of the assets this one runs after (raw tables, customer_context) that their own
    asset checks already validated in this run, in this process (the in-process executor), are
    reported from those results: nothing in the run writes to them after their checks.
    """
    reused = validated_in_run(context.run.run_id, SUMMARY_AFTER_SUITES)
    if reused:
        context.log.info(f"{len(reused)} suite(s) as this run's asset checks validated them: "
                         + ", ".join(r.suite.name for r in reused.values()))
    try:
        outcomes = collect_outcomes(warehouse, validated=reused)
    except Exception as error:  # noqa: BLE001 - the summary reports, it never fails the run
        context.log.warning(f"data-quality summary incomplete: {error}")
        outcomes = [_error_outcome("warehouse", error)]
    return dg.MaterializeResult(metadata={
        "summary": dg.MetadataValue.md(render_markdown(outcomes, "Data quality of this run")),
        "headline": dg.MetadataValue.text(headline(outcomes)),
        "checks_evaluated": len(outcomes),
        "suites_from_this_runs_checks": len(reused),
        "checks_failed": sum(o.failed for o in outcomes),
        "blocking_failures": sum(o.blocking for o in outcomes),
    })


assets = [data_quality_summary]

with warnings.catch_warnings():  # superseded like the checks above; still the way to run them on a timer
    warnings.simplefilter("ignore")
    freshness_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=freshness_checks, name="raw_freshness_checks_sensor", minimum_interval_seconds=600)
sensors = [freshness_sensor]

__all__ = ["assets", "asset_checks", "sensors", "message_drafts_checks", "customer_scores_checks", "build_suite_checks",
           "build_score_shift_check"]
