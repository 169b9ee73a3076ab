-- Per point in time and customer with a subscription started before it: the
-- subscription they had then (live first, then latest started), rebuilt from dated
-- events because raw.subscriptions holds today's state - status from cancelled_at,
-- cadence from change_cadence events, paused from pause/resume events.
-- Weekly points for the customers of int_training_customers, the scoring point for
-- everyone; an incremental run computes the points new since the last one.

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='as_of_date',
    on_schema_change='fail',
    pre_hook="{{ drop_unsettled_rows(sampled=true) }}",
) }}

with

points as (

    select * from {{ ref('int_features_as_of_dates') }}
    {{ after_kept() }}

),

training_customers as (

    select customer_id from {{ ref('int_training_customers') }}

),

subscriptions as (

    select * from {{ ref('stg_raw__subscriptions') }}
    where started_at < {{ as_of_end() }}

),

portal_events as (

    select * from {{ ref('stg_raw__portal_events') }}
    where occurred_at < {{ as_of_end() }}

),

cadence_changes as (

    select
        {{ json_text('properties', 'subscription_id') }} as subscription_id,
        occurred_at,
        cast({{ json_text('properties', 'from_days') }} as {{ dbt.type_int() }}) as from_days,
        cast({{ json_text('properties', 'to_days') }} as {{ dbt.type_int() }}) as to_days

    from portal_events
    where event_type = 'change_cadence'

),

pause_events as (

    select customer_id, occurred_at, event_type
    from portal_events
    where event_type in ('pause', 'resume')

),

started as (

    select
        points.as_of_date,
        points.as_of_at,
        subscriptions.customer_id,
        subscriptions.subscription_id,
        subscriptions.plan,
        subscriptions.cadence_days as cadence_days_now,
        subscriptions.is_gift,
        subscriptions.started_at,
        -- still running at as_of: not cancelled yet then
        (subscriptions.cancelled_at is null or subscriptions.cancelled_at >= points.as_of_at) as is_live

    from points
    inner join subscriptions
        on subscriptions.started_at < points.as_of_at
    where points.is_scoring_point
       or subscriptions.customer_id in (select customer_id from training_customers)

),

per_customer as (

    select
        as_of_date,
        customer_id,
        min(started_at) as first_subscribed_at,
        count(*) as subscriptions_started

    from started
    group by as_of_date, customer_id

),

ranked as (

    select
        *,
        row_number() over (
            partition by as_of_date, customer_id
            order by case when is_live then 0 else 1 end, started_at desc, subscription_id
        ) as customer_subscription_rank

    from started

),

current_subscription as (

    select * from ranked
    where customer_subscription_rank = 1

),

changes_before as (

    select
        current_subscription.as_of_date,
        current_subscription.subscription_id,
        cadence_changes.to_days,
        cadence_changes.occurred_at

    from current_subscription
    inner join cadence_changes
        on cadence_changes.subscription_id = current_subscription.subscription_id
        and cadence_changes.occurred_at < current_subscription.as_of_at

),

last_change_before as (

    {{ deduplicate('changes_before', 'as_of_date, subscription_id', 'occurred_at desc') }}

),

changes_after as (

    select
        current_subscription.as_of_date,
        current_subscription.subscription_id,
        cadence_changes.from_days,
        cadence_changes.occurred_at

    from current_subscription
    inner join cadence_changes
        on cadence_changes.subscription_id = current_subscription.subscription_id
        and cadence_changes.occurred_at >= current_subscription.as_of_at

),

first_change_after as (

    {{ deduplicate('changes_after', 'as_of_date, subscription_id', 'occurred_at') }}

),

pauses_before as (

    select
        points.as_of_date,
        pause_events.customer_id,
        pause_events.event_type,
        pause_events.occurred_at

    from points
    inner join pause_events
        on pause_events.occurred_at < points.as_of_at
    where points.is_scoring_point
       or pause_events.customer_id in (select customer_id from training_customers)

),

last_pause_event as (

    {{ deduplicate('pauses_before', 'as_of_date, customer_id', 'occurred_at desc') }}

),

final as (

    select
        current_subscription.as_of_date,
        current_subscription.customer_id,
        current_subscription.subscription_id,
        current_subscription.is_live,
        -- paused by the current subscription's own last pause: one of an earlier subscription
        -- (cancelled while paused, no resume) does not pause the one they came back with
        current_subscription.is_live and coalesce(last_pause_event.event_type = 'pause'
            and last_pause_event.occurred_at >= current_subscription.started_at, false) as is_paused,
        current_subscription.is_live and not coalesce(last_pause_event.event_type = 'pause'
            and last_pause_event.occurred_at >= current_subscription.started_at, false) as is_active_subscriber,
        current_subscription.is_gift,
        case current_subscription.plan
            when 'single_bag' then 1 when 'double_bag' then 2 when 'family' then 3
        end as plan_bags,
        -- the cadence then: after the last change before as_of, else before the first
        -- change after it, else today's (never changed)
        coalesce(last_change_before.to_days, first_change_after.from_days,
                 current_subscription.cadence_days_now) as cadence_days,
        {{ dbt.datediff('current_subscription.started_at', 'current_subscription.as_of_date', 'day') }}
            as subscription_age_days,
        {{ dbt.datediff('per_customer.first_subscribed_at', 'current_subscription.as_of_date', 'day') }}
            as subscriber_tenure_days,
        per_customer.subscriptions_started

    from current_subscription
    inner join per_customer
        on current_subscription.as_of_date = per_customer.as_of_date
        and current_subscription.customer_id = per_customer.customer_id
    left join last_change_before
        on current_subscription.as_of_date = last_change_before.as_of_date
        and current_subscription.subscription_id = last_change_before.subscription_id
    left join first_change_after
        on current_subscription.as_of_date = first_change_after.as_of_date
        and current_subscription.subscription_id = first_change_after.subscription_id
    left join last_pause_event
        on current_subscription.as_of_date = last_pause_event.as_of_date
        and current_subscription.customer_id = last_pause_event.customer_id

)

select * from final
