-- One row per customer with events on settled days: int_features_activity's lifetime
-- counters and latest days over the days before counted_before, the first day the
-- next daily run may still recompute (var incremental_lookback_days back from as_of).
-- The next run's int_features_activity starts its scoring point from these totals
-- and adds only the days since, instead of summing every customer's history again.
-- Incremental: a run adds the days that settled since the last one to the customers
-- active on them, so a row's counted_before is that of the run that last changed it (the
-- customer had no events between it and the latest counted_before); a run at an earlier
-- as_of starts over (macros/incremental.sql).

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='customer_id',
    on_schema_change='fail',
    pre_hook="{{ drop_totals_counted_past(settled_before()) }}",
) }}

-- Built after int_features_activity, which reads the totals the previous run left here.
-- depends_on: {{ ref('int_features_activity') }}

{%- set lifetime_sums = activity_sums() | selectattr(2, 'none') | list %}
{%- set latest = activity_latest() %}

with

daily as (

    select * from {{ daily_activity() }} as daily
    where activity_date < {{ settled_before() }}
    {%- if is_incremental() %}
      and activity_date >= {{ counted_before(this) }}
    {%- endif %}

),

new_days as (

    select
        daily.customer_id,
        {{- lifetime_aggregates() }}

    from daily
    group by daily.customer_id

),

{% if is_incremental() %}
carried as (

    select * from {{ this }}

),
{% endif %}

final as (

    select
        new_days.customer_id,
        {{ settled_before() }} as counted_before,
        {%- for name, counter, weeks in lifetime_sums %}
        {%- if is_incremental() %}
        cast(coalesce(carried.{{ name }}, 0) + new_days.{{ name }} as {{ type_money() if counter == 'spend' else dbt.type_bigint() }})
        {%- else %}
        cast(new_days.{{ name }} as {{ type_money() if counter == 'spend' else dbt.type_bigint() }})
        {%- endif %} as {{ name }},
        {%- endfor %}
        {%- for name, counter in latest %}
        {%- if is_incremental() %}
        -- the new days all come after the carried ones
        coalesce(new_days.{{ name }}, carried.{{ name }})
        {%- else %}
        new_days.{{ name }}
        {%- endif %} as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from new_days
    {%- if is_incremental() %}
    left join carried
        on new_days.customer_id = carried.customer_id
    {%- endif %}

)

select * from final
