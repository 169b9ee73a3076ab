-- One row per customer per point in time (weekly as_of dates over the history, plus
-- the scoring point at var as_of): behaviour features computed only from
-- events before as_of_date, for training propensity models (with customer_labels)
-- and for scoring today. Each row is what we could have known at as_of_date 00:00 UTC.
-- Weekly points cover the customers of int_training_customers (var training_customers),
-- the scoring point every customer. Incremental: a daily run adds the points new since
-- the last one (macros/incremental.sql); past weekly points never change.

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

customers as (

    select * from {{ ref('stg_raw__customers') }}

),

training_customers as (

    select customer_id from {{ ref('int_training_customers') }}

),

activity as (

    select * from {{ ref('int_features_activity') }}
    {{ after_kept() }}

),

subscriptions as (

    select * from {{ ref('int_features_subscriptions') }}
    {{ after_kept() }}

),

cycles as (

    select * from {{ ref('int_features_cycles') }}
    {{ after_kept() }}

),

grid as (

    -- customers whose account existed at the point in time
    select
        points.as_of_date,
        points.is_scoring_point,
        customers.customer_id,
        customers.created_at

    from points
    inner join customers
        on customers.created_at < points.as_of_at
    where points.is_scoring_point
       or customers.customer_id in (select customer_id from training_customers)

),

joined as (

    select
        grid.as_of_date,
        grid.is_scoring_point,
        grid.customer_id,
        {{ dbt.datediff('grid.created_at', 'grid.as_of_date', 'day') }} as tenure_days,

        coalesce(subscriptions.is_live, false) as is_subscriber,
        coalesce(subscriptions.is_active_subscriber, false) as is_active_subscriber,
        coalesce(subscriptions.is_paused, false) as is_paused,
        coalesce(subscriptions.is_gift, false) as is_gift,
        case when subscriptions.is_live then subscriptions.plan_bags end as plan_bags,
        case when subscriptions.is_live then subscriptions.cadence_days end as cadence_days,
        case when subscriptions.is_live then subscriptions.subscription_age_days end as subscription_age_days,
        subscriptions.subscriber_tenure_days,
        coalesce(subscriptions.subscriptions_started, 0) as subscriptions_started,

        coalesce(activity.orders_lifetime, 0) as orders_lifetime,
        coalesce(activity.spend_lifetime, 0) as spend_lifetime,
        coalesce(activity.orders_4w, 0) as orders_4w,
        coalesce(activity.orders_13w, 0) as orders_13w,
        coalesce(activity.spend_13w, 0) as spend_13w,
        coalesce(activity.skips_lifetime, 0) as skips_lifetime,
        coalesce(activity.skips_4w, 0) as skips_4w,
        coalesce(activity.skips_13w, 0) as skips_13w,
        coalesce(activity.failed_orders_13w, 0) as failed_orders_13w,
        coalesce(activity.discounted_orders_lifetime, 0) as discounted_orders_lifetime,
        coalesce(activity.one_time_orders_lifetime, 0) as one_time_orders_lifetime,
        coalesce(activity.add_ons_lifetime, 0) as add_ons_lifetime,
        coalesce(activity.add_ons_4w, 0) as add_ons_4w,
        coalesce(activity.add_ons_13w, 0) as add_ons_13w,
        {{ dbt.datediff('activity.last_order_date', 'grid.as_of_date', 'day') }} as days_since_last_order,
        {{ dbt.datediff('activity.last_add_on_date', 'grid.as_of_date', 'day') }} as days_since_last_add_on,
        {{ dbt.datediff('activity.last_skip_date', 'grid.as_of_date', 'day') }} as days_since_last_skip,

        cycles.cycles_lifetime,
        coalesce(cycles.recent_cycles, 0) as recent_cycles,
        coalesce(cycles.recent_cycle_skips, 0) as recent_cycle_skips,
        coalesce(cycles.consecutive_skips, 0) as consecutive_skips,
        cycles.days_since_last_cycle,

        coalesce(activity.emails_sent_4w, 0) as emails_sent_4w,
        coalesce(activity.emails_sent_13w, 0) as emails_sent_13w,
        coalesce(activity.opens_4w, 0) as opens_4w,
        coalesce(activity.opens_13w, 0) as opens_13w,
        coalesce(activity.clicks_4w, 0) as clicks_4w,
        coalesce(activity.clicks_13w, 0) as clicks_13w,
        coalesce(activity.logins_4w, 0) as logins_4w,
        coalesce(activity.logins_13w, 0) as logins_13w,
        coalesce(activity.engagement_4w, 0) as engagement_4w,
        -- the 13 weeks before the last 4: what engagement fell from
        coalesce(activity.engagement_17w, 0) - coalesce(activity.engagement_4w, 0) as engagement_prior_13w,
        {{ dbt.datediff('activity.last_engagement_date', 'grid.as_of_date', 'day') }} as days_since_last_engagement,
        coalesce(activity.conversions_lifetime, 0) as conversions_lifetime,
        coalesce(activity.playbook_sends_13w, 0) as playbook_sends_13w,
        {{ dbt.datediff('activity.last_playbook_send_date', 'grid.as_of_date', 'day') }} as days_since_last_playbook_send,
        coalesce(activity.discount_sends_lifetime, 0) as discount_sends_lifetime,
        coalesce(activity.discount_conversions_lifetime, 0) as discount_conversions_lifetime,
        coalesce(activity.opt_outs_lifetime, 0) > 0 as has_opted_out,
        coalesce(activity.bounces_lifetime, 0) as bounces_lifetime,

        coalesce(activity.portal_actions_4w, 0) as portal_actions_4w,
        coalesce(activity.cancel_attempts_4w, 0) as cancel_attempts_4w,
        coalesce(activity.cancel_attempts_13w, 0) as cancel_attempts_13w,
        coalesce(activity.cancel_attempts_lifetime, 0) as cancel_attempts_lifetime,
        coalesce(activity.pauses_13w, 0) as pauses_13w,
        coalesce(activity.reschedules_13w, 0) as reschedules_13w,
        coalesce(activity.product_swaps_13w, 0) as product_swaps_13w,
        coalesce(activity.cadence_changes_lifetime, 0) as cadence_changes_lifetime,
        coalesce(activity.reactivations_lifetime, 0) as reactivations_lifetime,
        coalesce(activity.payment_updates_13w, 0) as payment_updates_13w,

        coalesce(activity.tickets_lifetime, 0) as tickets_lifetime,
        coalesce(activity.tickets_13w, 0) as tickets_13w,
        -- opened and not yet resolved before as_of_date
        coalesce(activity.tickets_lifetime, 0) - coalesce(activity.tickets_resolved_lifetime, 0) as open_tickets,
        coalesce(activity.cancel_request_tickets_13w, 0) as cancel_request_tickets_13w,
        coalesce(activity.delivery_tickets_13w, 0) as delivery_tickets_13w,
        case when activity.csat_ratings_lifetime > 0
             then cast(activity.csat_points_lifetime as {{ dbt.type_float() }}) / activity.csat_ratings_lifetime
        end as avg_csat,

        coalesce(activity.payment_failures_13w, 0) as payment_failures_13w,
        coalesce(activity.cancellations_lifetime, 0) as cancellations_lifetime,
        coalesce(activity.upgrades_lifetime, 0) as upgrades_lifetime,
        {{ dbt.datediff('activity.last_cancellation_date', 'grid.as_of_date', 'day') }} as days_since_last_cancellation

    from grid
    left join activity
        on grid.as_of_date = activity.as_of_date
        and grid.customer_id = activity.customer_id
    left join subscriptions
        on grid.as_of_date = subscriptions.as_of_date
        and grid.customer_id = subscriptions.customer_id
    left join cycles
        on grid.as_of_date = cycles.as_of_date
        and grid.customer_id = cycles.customer_id

),

derived as (

    select
        *,
        -- daily rate of the last 4 weeks over the daily rate of the 13 weeks before
        case
            when engagement_prior_13w > 0
                then round((engagement_4w / 28.0) / (engagement_prior_13w / 91.0), 3)
        end as engagement_trend_ratio,
        case when emails_sent_13w > 0
             then cast(opens_13w as {{ dbt.type_float() }}) / emails_sent_13w end as open_rate_13w,
        case when skips_lifetime + orders_lifetime > 0
             then cast(skips_lifetime as {{ dbt.type_float() }}) / (skips_lifetime + orders_lifetime)
        end as skip_share_lifetime,
        case when orders_lifetime > 0
             then cast(spend_lifetime as {{ dbt.type_float() }}) / orders_lifetime end as average_order_value

    from joined

),

rules as (

    -- the segment rules of customer_segments, evaluated at as_of_date with the same
    -- vars (on 4 / 13-week windows for 30 / 90 days): the baseline the propensity
    -- models are compared with
    select
        *,
        coalesce(is_active_subscriber and (
            (engagement_prior_13w >= {{ var('at_risk_min_prior_engagement') }}
             and engagement_trend_ratio <= {{ var('at_risk_engagement_drop_ratio') }})
            or cancel_attempts_4w > 0
            or consecutive_skips >= {{ var('at_risk_consecutive_skips') }}
        ), false) as rule_at_risk,
        is_active_subscriber
            and recent_cycles >= {{ var('cadence_mismatch_cycles') }}
            and recent_cycle_skips between {{ var('cadence_mismatch_min_skips') }}
                                       and {{ var('cadence_mismatch_max_skips') }}
            as rule_cadence_mismatch

    from derived

),

final as (

    select
        *,
        is_active_subscriber
            and coalesce(days_since_last_add_on <= {{ var('expansion_window_days') }}, false)
            and not rule_at_risk as rule_expansion

    from rules

)

select * from final
