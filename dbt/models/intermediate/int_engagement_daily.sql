-- One row per customer per day with any email or portal activity up to the as_of
-- day: opens, clicks and logins (the engagement signal), plus other portal actions
-- and email opt-outs. days_before_as_of = 0 on the as_of day.

with

email_events as (

    select * from {{ ref('stg_raw__email_events') }}

),

portal_events as (

    select * from {{ ref('stg_raw__portal_events') }}

),

activity as (

    select
        customer_id,
        cast(occurred_at as date) as activity_date,
        case when event_type = 'open' then 1 else 0 end as opens,
        case when event_type = 'click' then 1 else 0 end as clicks,
        0 as logins,
        0 as portal_actions,
        0 as cancel_attempts,
        case when event_type in ('unsubscribe', 'complaint') then 1 else 0 end as opt_outs

    from email_events
    where occurred_at < {{ as_of_end() }}
      and event_type in ('open', 'click', 'unsubscribe', 'complaint')

    union all

    select
        customer_id,
        cast(occurred_at as date) as activity_date,
        0 as opens,
        0 as clicks,
        case when event_type = 'login' then 1 else 0 end as logins,
        case when event_type <> 'login' then 1 else 0 end as portal_actions,
        case when event_type = 'cancel_attempt' then 1 else 0 end as cancel_attempts,
        0 as opt_outs

    from portal_events
    where occurred_at < {{ as_of_end() }}

),

final as (

    select
        customer_id,
        activity_date,
        {{ days_before_as_of('activity_date') }} as days_before_as_of,
        sum(opens) as opens,
        sum(clicks) as clicks,
        sum(logins) as logins,
        sum(opens) + sum(clicks) + sum(logins) as engagement_events,
        sum(portal_actions) as portal_actions,
        sum(cancel_attempts) as cancel_attempts,
        sum(opt_outs) as opt_outs

    from activity
    group by customer_id, activity_date

)

select * from final
