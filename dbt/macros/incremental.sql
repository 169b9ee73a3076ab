{#-
    Incremental point-in-time history (int_features_*, customer_features, customer_labels).
    A daily run keeps what is settled and recomputes the rest: the rows that read a day
    from incremental_start() on, and the previous run's scoring point. Each model's
    pre-hook drops those rows (drop_unsettled_rows); the model then computes every date
    after the latest one left (after_kept). `--full-refresh` rebuilds the whole history
    with the same rows (tests/warehouse/test_features_incremental.py).
-#}

{#-
    The first day whose events may still change since `this` was built: the last
    var incremental_lookback_days days the previous run saw (late events), and every
    day after them - minus `days_back`. The previous run's as_of is the latest date
    stored; a run at an earlier as_of counts back from its own.
-#}
{% macro incremental_start(date_column, days_back=0) -%}
    {%- set lookback = var('incremental_lookback_days') | int -%}
    {%- if lookback < 1 -%}
        {{ exceptions.raise_compiler_error(
            "dbt_project.yml: var incremental_lookback_days must be at least 1 (the day the previous run "
            ~ "ended on may still get events), got " ~ lookback) }}
    {%- endif -%}
    {%- set previous = '(select max(' ~ date_column ~ ') from ' ~ this ~ ')' -%}
    {{ dbt.dateadd('day', 1 - lookback - days_back,
                   'least(' ~ as_of_date() ~ ', coalesce(' ~ previous ~ ', ' ~ as_of_date() ~ '))') }}
{%- endmacro %}

{#-
    Pre-hook of an incremental point-in-time model. On an incremental run it deletes the
    rows that read a day from incremental_start() on - a row dated D reads the days before
    D plus `reads_days_after` days from D (1: a day's own counters; two label windows:
    labels) - and the previous run's scoring point (the latest date stored); with
    `sampled`, also the rows of customers no longer in int_training_customers.
    Renders nothing on a full refresh.
-#}
{% macro drop_unsettled_rows(date_column='as_of_date', reads_days_after=0, sampled=false) -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where {{ date_column }} > {{ incremental_start(date_column, reads_days_after) }}
       or {{ date_column }} = (select max({{ date_column }}) from {{ this }})
       {%- if sampled %}
       or customer_id not in (select customer_id from {{ ref('int_training_customers') }})
       {%- endif %}
    {%- endif -%}
{%- endmacro %}

{#- The latest date `this` kept after its pre-hook (1900-01-01 when empty). -#}
{% macro last_kept(this_column='as_of_date') -%}
    coalesce((select max({{ this_column }}) from {{ this }}), cast('1900-01-01' as date))
{%- endmacro %}

{#-
    On an incremental run, a `where` (or `and`) keeping what this run computes: `column`
    after the latest date `this` kept in `this_column` (a timestamp `column`: from the
    day after it). Renders nothing on a full refresh.
-#}
{% macro after_kept(column='as_of_date', keyword='where', this_column='as_of_date', timestamp=false) -%}
    {%- if is_incremental() -%}
        {%- if timestamp -%}
    {{ keyword }} {{ column }} >= cast({{ dbt.dateadd('day', 1, last_kept(this_column)) }} as {{ dbt.type_timestamp() }})
        {%- else -%}
    {{ keyword }} {{ column }} > {{ last_kept(this_column) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#-
    Carried-forward totals (int_features_lifetime): the first day a daily run at as_of may
    still recompute; the days before it are settled and are counted once.
-#}
{% macro settled_before() -%}
    cast({{ dbt.dateadd('day', 1 - var('incremental_lookback_days') | int, as_of_date()) }} as date)
{%- endmacro %}

{#- The day `totals` counted up to (excluded): the latest run that added any (1900-01-01: none). -#}
{% macro counted_before(totals) -%}
    coalesce((select max(counted_before) from {{ totals }}), cast('1900-01-01' as date))
{%- endmacro %}

{#- Pre-hook of int_features_lifetime: a run at an earlier as_of than the totals start over. -#}
{% macro drop_totals_counted_past(day) -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where (select max(counted_before) from {{ this }}) > {{ day }}
    {%- endif -%}
{%- endmacro %}

{#- Pre-hook of a weekly roll-up: deletes the weeks from the one holding incremental_start() on. -#}
{% macro drop_unsettled_weeks(week_column='week_start') -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where {{ week_column }} >= cast({{ dbt.date_trunc('week', incremental_start(week_column)) }} as date)
    {%- endif -%}
{%- endmacro %}

{#-
    Pre-hook of a model whose rows are dated by `timestamp_column`: a run at an earlier
    as_of than the last deletes the rows after it (a later run deletes nothing).
-#}
{% macro drop_rows_after_as_of(timestamp_column) -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where {{ timestamp_column }} >= {{ as_of_end() }}
    {%- endif -%}
{%- endmacro %}

{#-
    Pre-hook of customer_segment_history: deletes the rows dated (`date_column`) on or after
    the as_of day, which this run computes again (the same day rerun, or an earlier one replayed).
-#}
{% macro drop_rows_from_as_of(date_column) -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where {{ date_column }} >= {{ as_of_date() }}
    {%- endif -%}
{%- endmacro %}

{#-
    Event staging tables (stg_raw__email_events, _portal_events, _payments): on an
    incremental run, a `where` keeping the raw rows to (re)read - those from the first
    day that may have changed (incremental_start) on; the rest are staged already.
    Events do not change once they happened; one loaded later than
    var incremental_lookback_days after its day needs `--full-refresh`.
-#}
{% macro events_since_last_run(timestamp_column) -%}
    {%- if is_incremental() -%}
    where cast({{ timestamp_column }} as {{ dbt.type_timestamp() }})
        >= cast({{ incremental_start('cast(' ~ timestamp_column ~ ' as date)') }} as {{ dbt.type_timestamp() }})
    {%- endif -%}
{%- endmacro %}

{#-
    Staging tables of rows that change after they land (stg_raw__orders, _order_items: an
    order ships, is delivered, refunded, gains a line). `relation` is the model's CTE of
    renamed raw rows, in the model's columns and order. On an incremental run it keeps the
    rows of the keys that have a row `this` does not hold: new, sent again in another state,
    or corrected. A key's rows are then deduplicated as on a full build and replace its
    staged row (delete+insert on `key`), so the table equals a full rebuild's without
    rewriting the millions of rows that did not change. Renders all of `relation` otherwise.
-#}
{% macro keys_with_unstaged_rows(relation, key) -%}
    select * from {{ relation }}
    {%- if is_incremental() %}
    where {{ key }} in (
        select {{ key }} from (
            select * from {{ relation }}
            except
            select * from {{ this }}
        ) as not_staged
    )
    {%- endif %}
{%- endmacro %}

{#-
    Pre-hook of those tables: on an incremental run, delete the staged rows whose `key` is no
    longer among `raw_keys` (SQL selecting the raw rows' keys, none null): a loader deleted
    them, and a full rebuild would not have them.
-#}
{% macro drop_keys_gone_from_raw(key, raw_keys) -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where {{ key }} not in ({{ raw_keys }})
    {%- endif -%}
{%- endmacro %}
