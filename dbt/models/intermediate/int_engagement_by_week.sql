-- Opens, clicks and logins per customer per week (weeks start on Monday on both
-- DuckDB and Snowflake's default WEEK_START), for trends and weekly features.

with

daily as (

    select * from {{ ref('int_engagement_daily') }}

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
