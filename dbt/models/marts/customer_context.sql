-- One row per customer, current as of the as_of day: the facts a message may cite
-- (plan, dates, products, tickets) and the signals segments are built from.

with

customers as (

    select * from {{ ref('stg_raw__customers') }}
    where created_at < {{ as_of_end() }}

),

products as (

    select * from {{ ref('stg_raw__products') }}

),

subscriptions as (

    select * from {{ ref('int_subscriptions_as_of') }}

),

skip_pattern as (

    select * from {{ ref('int_customer_skip_pattern') }}

),

order_activity as (

    select * from {{ ref('int_customer_order_activity') }}

),

favourite_product as (

    select * from {{ ref('int_customer_favourite_product') }}

),

lifetime_value as (

    select * from {{ ref('int_customer_lifetime_value') }}

),

engagement as (

    select * from {{ ref('int_customer_engagement') }}

),

tickets as (

    select * from {{ ref('int_customer_tickets') }}

),

payment_health as (

    select * from {{ ref('int_payment_health') }}

),

current_subscription as (

    select * from subscriptions
    where customer_subscription_rank = 1

),

cancellations as (

    select * from subscriptions
    where cancelled_at is not null

),

last_cancellation as (

    {{ deduplicate('cancellations', 'customer_id', 'cancelled_at desc, subscription_id desc') }}

),

gift_history as (

    select
        customer_id,
        max(case when is_gift then 1 else 0 end) = 1 as has_gift_subscription

    from subscriptions
    group by customer_id

),

joined as (

    select
        customers.customer_id,
        customers.first_name,
        customers.email,
        customers.country,
        customers.timezone,
        customers.created_at,
        {{ dbt.datediff('customers.created_at', as_of_date(), 'day') }} as tenure_days,

        current_subscription.subscription_id,
        current_subscription.product_id as subscription_product_id,
        subscription_product.product_name as subscription_product_name,
        current_subscription.plan,
        current_subscription.cadence_days,
        current_subscription.price as subscription_price,
        current_subscription.subscription_status,
        current_subscription.started_at as subscription_started_at,
        coalesce(current_subscription.is_live, false) as is_subscriber,
        coalesce(current_subscription.is_gift, false) as is_gift,
        coalesce(gift_history.has_gift_subscription, false) as has_gift_subscription,
        case
            when current_subscription.subscription_status <> 'active' then null
            -- raw holds the next charge after the latest load; use it when it falls
            -- within one cycle of as_of, otherwise count on from the latest cycle
            when current_subscription.next_charge_at >= {{ as_of_end() }}
                and current_subscription.next_charge_at < {{ dbt.dateadd(
                    'day', 'current_subscription.cadence_days', as_of_end()) }}
                then cast(current_subscription.next_charge_at as date)
            when skip_pattern.last_cycle_at is not null
                then cast({{ dbt.dateadd(
                    'day', 'current_subscription.cadence_days', 'skip_pattern.last_cycle_at'
                ) }} as date)
            else cast(current_subscription.next_charge_at as date)
        end as next_charge_date,
        last_cancellation.cancelled_at as last_cancelled_at,
        last_cancellation.cancel_reason as last_cancel_reason,

        favourite_product.favourite_product_id,
        favourite_product.favourite_product_name,
        cast(order_activity.last_order_at as date) as last_order_date,
        order_activity.last_order_status,
        cast(order_activity.last_shipped_at as date) as last_shipped_date,
        cast(order_activity.last_delivered_at as date) as last_delivery_date,
        order_activity.last_delivery_status,
        coalesce(order_activity.orders_last_30d, 0) as orders_last_30d,
        coalesce(order_activity.orders_last_90d, 0) as orders_last_90d,
        coalesce(order_activity.skips_last_30d, 0) as skips_last_30d,
        coalesce(order_activity.skips_last_90d, 0) as skips_last_90d,
        coalesce(skip_pattern.recent_cycles, 0) as recent_cycles,
        coalesce(skip_pattern.recent_cycle_skips, 0) as recent_cycle_skips,
        coalesce(skip_pattern.consecutive_skips, 0) as consecutive_skips,
        coalesce(order_activity.one_time_addons_last_30d, 0) as one_time_addons_last_30d,
        coalesce(order_activity.one_time_addons_last_90d, 0) as one_time_addons_last_90d,
        cast(order_activity.last_one_time_addon_at as date) as last_one_time_addon_date,
        coalesce(lifetime_value.lifetime_value, 0) as lifetime_value,
        coalesce(lifetime_value.fulfilled_orders, 0) as lifetime_fulfilled_orders,

        coalesce(engagement.opens_last_30d, 0) as opens_last_30d,
        coalesce(engagement.clicks_last_30d, 0) as clicks_last_30d,
        coalesce(engagement.logins_last_30d, 0) as logins_last_30d,
        coalesce(engagement.engagement_last_30d, 0) as engagement_last_30d,
        coalesce(engagement.engagement_prior_90d, 0) as engagement_prior_90d,
        engagement.engagement_trend_ratio,
        coalesce(engagement.clicks_last_90d, 0) as clicks_last_90d,
        coalesce(engagement.recent_cancel_attempts, 0) as recent_cancel_attempts,
        -- latest sign of life: an open, click, portal visit or fulfilled order
        -- (a case, not greatest(): Snowflake's greatest() is null if any input is)
        case
            when engagement.last_active_date is null then cast(order_activity.last_fulfilled_order_at as date)
            when order_activity.last_fulfilled_order_at is null then engagement.last_active_date
            when cast(order_activity.last_fulfilled_order_at as date) > engagement.last_active_date
                then cast(order_activity.last_fulfilled_order_at as date)
            else engagement.last_active_date
        end as last_activity_date,
        engagement.opted_out_date is not null as is_unsubscribed,

        coalesce(tickets.tickets_total, 0) as tickets_total,
        coalesce(tickets.tickets_last_90d, 0) as tickets_last_90d,
        coalesce(tickets.open_tickets, 0) as open_tickets,
        tickets.avg_csat,
        coalesce(tickets.has_repeat_issue, false) as has_repeat_issue,
        tickets.repeat_issue_topic,
        coalesce(tickets.tone_preference, 'unknown') as tone_preference,

        coalesce(payment_health.failed_payments_last_90d, 0) as failed_payments_last_90d,
        cast(payment_health.last_payment_failure_at as date) as last_payment_failure_date,
        payment_health.last_payment_failure_reason,
        coalesce(payment_health.payment_health, 'no_payments') as payment_health,

        -- no stated preference: email, the channel every customer has
        coalesce(customers.channel_preference, 'email') as channel_preference,
        customers.marketing_opt_in

    from customers
    left join current_subscription
        on customers.customer_id = current_subscription.customer_id
    left join products as subscription_product
        on current_subscription.product_id = subscription_product.product_id
    left join last_cancellation
        on customers.customer_id = last_cancellation.customer_id
    left join gift_history
        on customers.customer_id = gift_history.customer_id
    left join skip_pattern
        on customers.customer_id = skip_pattern.customer_id
    left join order_activity
        on customers.customer_id = order_activity.customer_id
    left join favourite_product
        on customers.customer_id = favourite_product.customer_id
    left join lifetime_value
        on customers.customer_id = lifetime_value.customer_id
    left join engagement
        on customers.customer_id = engagement.customer_id
    left join tickets
        on customers.customer_id = tickets.customer_id
    left join payment_health
        on customers.customer_id = payment_health.customer_id

),

final as (

    select
        cast(customer_id as {{ dbt.type_string() }}) as customer_id,
        {{ as_of_date() }} as as_of_date,
        cast(first_name as {{ dbt.type_string() }}) as first_name,
        cast(email as {{ dbt.type_string() }}) as email,
        cast(country as {{ dbt.type_string() }}) as country,
        cast(timezone as {{ dbt.type_string() }}) as timezone,
        created_at,
        cast(tenure_days as integer) as tenure_days,
        -- whole months of 30.44 days: datediff('month') counts calendar boundaries
        cast(floor(tenure_days / 30.44) as integer) as tenure_months,

        cast(subscription_id as {{ dbt.type_string() }}) as subscription_id,
        cast(subscription_product_id as {{ dbt.type_string() }}) as subscription_product_id,
        cast(subscription_product_name as {{ dbt.type_string() }}) as subscription_product_name,
        cast(plan as {{ dbt.type_string() }}) as plan,
        cast(cadence_days as integer) as cadence_days,
        cast(subscription_price as {{ type_money() }}) as subscription_price,
        cast(subscription_status as {{ dbt.type_string() }}) as subscription_status,
        subscription_started_at,
        is_subscriber,
        is_gift,
        has_gift_subscription,
        next_charge_date,
        last_cancelled_at,
        cast(last_cancel_reason as {{ dbt.type_string() }}) as last_cancel_reason,

        cast(favourite_product_id as {{ dbt.type_string() }}) as favourite_product_id,
        cast(favourite_product_name as {{ dbt.type_string() }}) as favourite_product_name,
        last_order_date,
        cast(last_order_status as {{ dbt.type_string() }}) as last_order_status,
        last_shipped_date,
        last_delivery_date,
        cast(last_delivery_status as {{ dbt.type_string() }}) as last_delivery_status,
        cast(orders_last_30d as integer) as orders_last_30d,
        cast(orders_last_90d as integer) as orders_last_90d,
        cast(skips_last_30d as integer) as skips_last_30d,
        cast(skips_last_90d as integer) as skips_last_90d,
        cast(recent_cycles as integer) as recent_cycles,
        cast(recent_cycle_skips as integer) as recent_cycle_skips,
        cast(consecutive_skips as integer) as consecutive_skips,
        cast(one_time_addons_last_30d as integer) as one_time_addons_last_30d,
        cast(one_time_addons_last_90d as integer) as one_time_addons_last_90d,
        last_one_time_addon_date,
        cast(lifetime_value as {{ type_money() }}) as lifetime_value,
        cast(lifetime_fulfilled_orders as integer) as lifetime_fulfilled_orders,

        cast(opens_last_30d as integer) as opens_last_30d,
        cast(clicks_last_30d as integer) as clicks_last_30d,
        cast(logins_last_30d as integer) as logins_last_30d,
        cast(engagement_last_30d as integer) as engagement_last_30d,
        cast(engagement_prior_90d as integer) as engagement_prior_90d,
        cast(engagement_trend_ratio as double) as engagement_trend_ratio,
        -- bands are descriptive only; at_risk uses var at_risk_engagement_drop_ratio
        cast(case
            when engagement_prior_90d = 0 and engagement_last_30d = 0 then 'inactive'
            when engagement_prior_90d = 0 then 'new'
            when engagement_trend_ratio >= 1.25 then 'rising'
            when engagement_trend_ratio <= 0.75 then 'falling'
            else 'steady'
        end as {{ dbt.type_string() }}) as engagement_trend,
        cast(clicks_last_90d as integer) as clicks_last_90d,
        cast(recent_cancel_attempts as integer) as recent_cancel_attempts,
        last_activity_date,
        cast({{ dbt.datediff('coalesce(last_activity_date, cast(created_at as date))',
                             as_of_date(), 'day') }} as integer) as days_since_last_activity,

        cast(tickets_total as integer) as tickets_total,
        cast(tickets_last_90d as integer) as tickets_last_90d,
        cast(open_tickets as integer) as open_tickets,
        cast(avg_csat as double) as avg_csat,
        has_repeat_issue,
        cast(repeat_issue_topic as {{ dbt.type_string() }}) as repeat_issue_topic,
        cast(tone_preference as {{ dbt.type_string() }}) as tone_preference,

        cast(failed_payments_last_90d as integer) as failed_payments_last_90d,
        last_payment_failure_date,
        cast(last_payment_failure_reason as {{ dbt.type_string() }}) as last_payment_failure_reason,
        cast(payment_health as {{ dbt.type_string() }}) as payment_health,

        cast(channel_preference as {{ dbt.type_string() }}) as channel_preference,
        marketing_opt_in,
        is_unsubscribed

    from joined

)

select * from final
