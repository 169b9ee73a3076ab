-- One row per customer per day with any email or portal activity up to the as_of
-- day: opens, clicks and logins (the engagement signal), plus other portal actions
-- and email opt-outs. days_before_as_of = 0 on the as_of day.
-- The days of int_features_daily (the same events, counted once) with any of them.
-- A view: a filter on int_features_daily, and days_before_as_of changes every day.

{{ config(materialized='view') }}

with

daily as (

    select * from {{ ref('int_features_daily') }}

),

final as (

    select
        customer_id,
        activity_date,
        {{ days_before_as_of('activity_date') }} as days_before_as_of,
        opens,
        clicks,
        logins,
        opens + clicks + logins as engagement_events,
        portal_actions,
        cancel_attempts,
        opt_outs

    from daily
    -- every portal event is a login or another portal action
    where opens + clicks + logins + portal_actions + opt_outs > 0

)

select * from final
