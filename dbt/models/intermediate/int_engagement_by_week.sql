-- Opens, clicks and logins per customer per week (weeks start on Monday on both
-- DuckDB and Snowflake's default WEEK_START), for trends and weekly features.
-- Incremental: a daily run recomputes the weeks from the one holding the first day that
-- may have changed (var incremental_lookback_days; macros/incremental.sql).

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='week_start',
    on_schema_change='fail',
    pre_hook="{{ drop_unsettled_weeks() }}",
) }}

with

daily as (

    select * from {{ ref('int_engagement_daily') }}
    {%- if is_incremental() %}
    -- the weeks after the latest one kept
    where activity_date >= {{ dbt.dateadd('day', 7, last_kept('week_start')) }}
    {%- endif %}

),

final as (

    select
        customer_id,
        cast({{ dbt.date_trunc('week', 'activity_date') }} as date) as week_start,
        sum(opens) as opens,
        sum(clicks) as clicks,
        sum(logins) as logins,
        sum(engagement_events) as engagement_events,
        sum(portal_actions) as portal_actions

    from daily
    group by 1, 2

)

select * from final
