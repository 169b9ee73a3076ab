-- Per customer: engagement (opens + clicks + logins) in the windows segments and
-- context use, and the trend of the last 30 days against the 90 days before.

with

daily as (

    select * from {{ ref('int_engagement_daily') }}

),

windows as (

    select
        customer_id,
        sum(case when days_before_as_of < 30 then opens else 0 end) as opens_last_30d,
        sum(case when days_before_as_of < 30 then clicks else 0 end) as clicks_last_30d,
        sum(case when days_before_as_of < 30 then logins else 0 end) as logins_last_30d,
        sum(case when days_before_as_of < 30 then engagement_events else 0 end) as engagement_last_30d,
        sum(case when days_before_as_of between 30 and 119 then engagement_events else 0 end)
            as engagement_prior_90d,
        sum(case when days_before_as_of < 90 then clicks else 0 end) as clicks_last_90d,
        sum(case when days_before_as_of < {{ var('at_risk_cancel_attempt_days') }}
                 then cancel_attempts else 0 end) as recent_cancel_attempts,
        max(case when engagement_events + portal_actions > 0 then activity_date end)
            as last_active_date,
        max(case when opt_outs > 0 then activity_date end) as opted_out_date

    from daily
    group by customer_id

),

final as (

    select
        *,
        -- daily rate of the last 30 days over the daily rate of the 90 before
        case
            when engagement_prior_90d > 0
                then round(
                    (engagement_last_30d / 30.0) / (engagement_prior_90d / 90.0), 3
                )
        end as engagement_trend_ratio

    from windows

)

select * from final
