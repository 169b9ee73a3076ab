-- Per point in time and customer with events before it: counters from
-- int_features_daily summed over the last 4 / 13 weeks and lifetime, and the latest
-- day of some kinds of event, using only days before as_of_date. Weekly points are
-- for the customers of int_training_customers, the scoring point for everyone.
-- A full build sums weekly buckets with window frames for the weekly points (fast: no
-- join of every day to every point). The scoring point, any weekday, and on an
-- incremental run the points new since the last run sum the days directly: lifetime
-- counters once per customer up to the first new point (on a daily run: the totals the
-- previous run carried forward in int_features_lifetime plus the days since), plus per
-- point the days after it and those in the windows. Both see exactly the 28 / 91 / 119
-- days before as_of_date.
-- Counts are integers; spend is a float (a feature, not bookkeeping).

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='as_of_date',
    on_schema_change='fail',
    pre_hook="{{ drop_unsettled_rows(sampled=true) }}",
) }}

{%- set sums = activity_sums() -%}
{%- set latest = activity_latest() -%}
{%- set counters = (sums | map(attribute=1) | list + latest | map(attribute=1) | list) | unique | list %}
{%- set max_weeks = sums | map(attribute=2) | reject('none') | max %}
{#- On a daily run: the lifetime totals the previous run carried forward (none before the first). -#}
{%- set totals = none %}
{%- if execute and is_incremental() %}
{%- set totals = adapter.get_relation(database=this.database, schema=this.schema,
                                      identifier='int_features_lifetime') %}
{%- endif %}

with

points as (

    select * from {{ ref('int_features_as_of_dates') }}
    {{ after_kept() }}

),

training_customers as (

    select customer_id from {{ ref('int_training_customers') }}

),

{% if not is_incremental() %}
weekly_buckets as (

    -- a day's events are first visible at the Monday after its week. Sums cast back to the
    -- daily row's 4-byte integer and 8-byte money: DuckDB sums into 16-byte types, and the
    -- window frames below over 12.8M weekly rows at 1M customers took 59 s on those, 36 s on these.
    select
        daily.customer_id,
        cast({{ dbt.dateadd('day', 7, dbt.date_trunc('week', 'daily.activity_date')) }} as date) as as_of_date,
        {%- for counter in counters %}
        cast(sum(daily.{{ counter }}) as {{ daily_counter_type(counter) }}) as {{ counter }},
        {%- endfor %}
        {%- for name, counter in latest %}
        max(case when daily.{{ counter }} > 0 then daily.activity_date end) as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from {{ daily_activity() }} as daily
    inner join training_customers
        on daily.customer_id = training_customers.customer_id
    group by 1, 2

),

first_seen as (

    select customer_id, min(as_of_date) as first_point
    from weekly_buckets
    group by customer_id

),

weekly_grid as (

    -- every weekly point from the customer's first with events before it, no gaps,
    -- so a frame of N rows is N weeks
    select
        points.as_of_date,
        first_seen.customer_id

    from first_seen
    inner join points
        on points.as_of_date >= first_seen.first_point
    where not points.is_scoring_point

),

weekly_dense as (

    select
        weekly_grid.as_of_date,
        weekly_grid.customer_id,
        {%- for counter in counters %}
        coalesce(weekly_buckets.{{ counter }}, 0) as {{ counter }},
        {%- endfor %}
        {%- for name, counter in latest %}
        weekly_buckets.{{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from weekly_grid
    left join weekly_buckets
        on weekly_grid.customer_id = weekly_buckets.customer_id
        and weekly_grid.as_of_date = weekly_buckets.as_of_date

),

weekly_points as (

    select
        as_of_date,
        customer_id,
        {%- for name, counter, weeks in sums %}
        cast(sum({{ counter }}) over (
            partition by customer_id order by as_of_date
            rows between {{ 'unbounded' if weeks is none else weeks - 1 }} preceding and current row
        ) as {{ dbt.type_float() if counter == 'spend' else dbt.type_int() }}) as {{ name }},
        {%- endfor %}
        {%- for name, counter in latest %}
        max({{ name }}) over (
            partition by customer_id order by as_of_date
            rows between unbounded preceding and current row
        ) as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from weekly_dense

),
{% endif %}

new_points as (

    -- the points summed over days: the scoring point (everyone) and, on an incremental
    -- run, the new weekly points (the training customers)
    select as_of_date, is_scoring_point
    from points
    {%- if not is_incremental() %}
    where is_scoring_point
    {%- endif %}

),

first_new_point as (

    select min(as_of_date) as as_of_date from new_points

),

{% if totals %}
carried_until as (

    -- the previous run's totals (int_features_lifetime) count the days before
    -- counted_before: usable when that is not after the first new point (it is after
    -- it when this run's as_of is earlier than the last: sum from the first day then)
    select
        case when {{ counted_before(totals) }} <= first_new_point.as_of_date
             then {{ counted_before(totals) }} else cast('1900-01-01' as date) end as activity_date
    from first_new_point

),

carried_totals as (

    select
        customer_id,
        {%- for name, counter, weeks in sums if weeks is none %}
        {{ name }},
        {%- endfor %}
        {%- for name, counter in latest %}
        {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from {{ totals }}
    where (select activity_date from carried_until) > cast('1900-01-01' as date)

),
{% endif %}

days_before_new_points as (

    -- the days before the first new point{% if totals %} not in the carried totals{% endif %}
    select
        daily.customer_id,
        {{- lifetime_aggregates() }}

    from {{ daily_activity() }} as daily
    where daily.activity_date < (select as_of_date from first_new_point)
    {%- if totals %}
      and daily.activity_date >= (select activity_date from carried_until)
    {%- endif %}
    group by daily.customer_id

),

before_new_points as (

    -- lifetime counters and latest days before the first new point, once per customer
    select
        customer_id,
        {%- for name, counter, weeks in sums if weeks is none %}
        sum({{ name }}) as {{ name }},
        {%- endfor %}
        {%- for name, counter in latest %}
        max({{ name }}) as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from (
        {%- if totals %}
        select * from carried_totals
        union all
        {%- endif %}
        select * from days_before_new_points
    ) as lifetime_parts
    group by customer_id

),

days_since_first_window as (

    -- the days the new points' windows read: from the longest window before the first
    -- new point up to the last one
    select * from {{ daily_activity() }} as daily
    where daily.activity_date >= (
            select cast({{ dbt.dateadd('day', -max_weeks * 7, 'as_of_date') }} as date) from first_new_point)
      and daily.activity_date < (select max(as_of_date) from new_points)

),

since_first_new_point as (

    -- per new point, its windows, and the lifetime counters and latest days from the
    -- first new point up to it: only days since then or in the longest window are read
    select
        new_points.as_of_date,
        daily.customer_id,
        {%- for name, counter, weeks in sums %}
        {%- if weeks is none %}
        sum(case when daily.activity_date >= first_new_point.as_of_date
                 then daily.{{ counter }} else 0 end) as {{ name }},
        {%- else %}
        sum(case when {{ in_last_days('daily.activity_date', weeks * 7, 'new_points.as_of_date') }}
                 then daily.{{ counter }} else 0 end) as {{ name }},
        {%- endif %}
        {%- endfor %}
        {%- for name, counter in latest %}
        max(case when daily.{{ counter }} > 0 and daily.activity_date >= first_new_point.as_of_date
                 then daily.activity_date end) as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from new_points
    cross join first_new_point
    -- the days before the point, back to the first new point or its longest window: as days
    -- before the point, so the condition mixes both sides and the few new points meet the
    -- days in a loop (two range conditions made DuckDB sort every day of the window: 2 s at 1M)
    inner join days_since_first_window as daily
        on {{ dbt.datediff('daily.activity_date', 'new_points.as_of_date', 'day') }} between 1 and greatest(
            {{ dbt.datediff('first_new_point.as_of_date', 'new_points.as_of_date', 'day') }}, {{ max_weeks * 7 }})
    group by new_points.as_of_date, daily.customer_id

),

new_grid as (

    -- who has events before each new point: before the first one, or since
    select new_points.as_of_date, before_new_points.customer_id
    from new_points
    cross join before_new_points

    union

    select as_of_date, customer_id
    from since_first_new_point

),

daily_points as (

    select
        new_grid.as_of_date,
        new_grid.customer_id,
        {%- for name, counter, weeks in sums %}
        cast(
            {%- if weeks is none %}
            coalesce(before_new_points.{{ name }}, 0) + coalesce(since_first_new_point.{{ name }}, 0)
            {%- else %}
            coalesce(since_first_new_point.{{ name }}, 0)
            {%- endif %}
            as {{ dbt.type_float() if counter == 'spend' else dbt.type_int() }}) as {{ name }},
        {%- endfor %}
        {%- for name, counter in latest %}
        coalesce(since_first_new_point.{{ name }}, before_new_points.{{ name }}) as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from new_grid
    inner join new_points
        on new_grid.as_of_date = new_points.as_of_date
    left join before_new_points
        on new_grid.customer_id = before_new_points.customer_id
    left join since_first_new_point
        on new_grid.as_of_date = since_first_new_point.as_of_date
        and new_grid.customer_id = since_first_new_point.customer_id
    where new_points.is_scoring_point
       or new_grid.customer_id in (select customer_id from training_customers)

),

final as (

    {%- if not is_incremental() %}
    select * from weekly_points
    union all
    {%- endif %}
    select * from daily_points

)

select * from final
