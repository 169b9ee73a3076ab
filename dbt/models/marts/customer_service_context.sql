-- One row per customer, current as of the as_of day: what a support agent needs at a
-- glance (tenure and value tiers, tags, subscriptions, recent orders and where they are,
-- next charge, payment health, how they like to be written to, and their tickets across
-- email, chat and phone). Built on customer_context, customer_tags and the int_service_*
-- roll-ups; nothing here recomputes a rule those already own.

{% set as_text = dbt.type_string() %}

with

context as (

    select * from {{ ref('customer_context') }}

),

tags as (

    select * from {{ ref('customer_tags') }}

),

subscription_history as (

    select * from {{ ref('int_service_subscription_history') }}

),

recent_orders as (

    select * from {{ ref('int_service_recent_orders') }}

),

products_tried as (

    select * from {{ ref('int_service_products_tried') }}

),

tickets as (

    select * from {{ ref('int_service_tickets') }}

),

order_lines as (

    select
        customer_id,
        {{ dbt.listagg(dbt.concat([
            "cast(cast(ordered_at as date) as " ~ as_text ~ ")",
            "' '", "order_id", "' '", "shipping_status",
            "case when delivered_at is not null then "
                ~ dbt.concat(["' '", "cast(cast(delivered_at as date) as " ~ as_text ~ ")"])
                ~ " when shipped_at is not null then "
                ~ dbt.concat(["' (shipped '", "cast(cast(shipped_at as date) as " ~ as_text ~ ")", "')'"])
                ~ " else '' end",
        ]), "'; '", 'order by ordered_at desc, order_id desc') }} as recent_orders

    from recent_orders
    group by customer_id

),

tried_lists as (

    select
        customer_id,
        {{ dbt.listagg('product_id', "','", 'order by product_id') }} as products_tried

    from products_tried
    group by customer_id

),

ltv_ranked as (

    select
        customer_id,
        -- share of paying customers with this lifetime value or more (as customer_tags)
        cume_dist() over (order by lifetime_value desc) as ltv_top_share

    from context
    where lifetime_value > 0

),

joined as (

    select
        context.*,
        coalesce(tags.high_ltv, false) as high_ltv,
        coalesce(tags.gift_recipient, false) as gift_recipient,
        coalesce(tags.at_risk, false) as at_risk,
        coalesce(tags.brand_advocate, false) as brand_advocate,
        ltv_ranked.ltv_top_share,
        subscription_history.subscriptions_total,
        subscription_history.cancelled_subscriptions,
        subscription_history.upgrades,
        subscription_history.first_subscribed_at,
        subscription_history.subscription_history,
        order_lines.recent_orders,
        tried_lists.products_tried,
        tickets.email_tickets,
        tickets.chat_tickets,
        tickets.phone_tickets,
        tickets.repeat_issues_in_lookback,
        tickets.last_ticket_at,
        tickets.last_ticket_channel,
        tickets.last_ticket_topic,
        tickets.open_ticket_ids,
        tickets.open_ticket_topics,
        tickets.repeat_issue_topics,
        tickets.ticket_history

    from context
    left join tags
        on context.customer_id = tags.customer_id
    left join ltv_ranked
        on context.customer_id = ltv_ranked.customer_id
    left join subscription_history
        on context.customer_id = subscription_history.customer_id
    left join order_lines
        on context.customer_id = order_lines.customer_id
    left join tried_lists
        on context.customer_id = tried_lists.customer_id
    left join tickets
        on context.customer_id = tickets.customer_id

),

final as (

    select
        cast(customer_id as {{ as_text }}) as customer_id,
        as_of_date,
        cast(first_name as {{ as_text }}) as first_name,
        created_at,
        tenure_days,
        tenure_months,
        cast(case
            when tenure_months < {{ var('service_tenure_established_months', 3) }} then 'new'
            when tenure_months < {{ var('service_tenure_loyal_months', 12) }} then 'established'
            when tenure_months < {{ var('service_tenure_long_time_months', 24) }} then 'loyal'
            else 'long_time'
        end as {{ as_text }}) as tenure_tier,
        lifetime_value,
        lifetime_fulfilled_orders,
        -- high follows the high_ltv tag, so the two never disagree
        cast(case
            when high_ltv then 'high'
            when ltv_top_share is null then 'none'
            when ltv_top_share <= {{ var('service_ltv_mid_top_share', 0.5) }} then 'mid'
            else 'low'
        end as {{ as_text }}) as lifetime_value_tier,

        high_ltv,
        gift_recipient,
        at_risk,
        brand_advocate,
        -- space-separated, for ESP profiles and helpdesk fields that take one text value
        cast(trim({{ dbt.concat([
            "case when high_ltv then 'high_ltv ' else '' end",
            "case when gift_recipient then 'gift_recipient ' else '' end",
            "case when at_risk then 'at_risk ' else '' end",
            "case when brand_advocate then 'brand_advocate ' else '' end",
        ]) }}) as {{ as_text }}) as tags_text,

        subscription_id,
        subscription_product_id,
        subscription_product_name,
        plan,
        cadence_days,
        subscription_price,
        subscription_status,
        subscription_started_at,
        is_subscriber,
        is_gift,
        cast(coalesce(subscriptions_total, 0) as integer) as subscriptions_total,
        cast(coalesce(cancelled_subscriptions, 0) as integer) as cancelled_subscriptions,
        cast(coalesce(upgrades, 0) as integer) as upgrades,
        first_subscribed_at,
        cast(subscription_history as {{ as_text }}) as subscription_history,
        last_cancelled_at,
        last_cancel_reason,
        recent_cancel_attempts,
        recent_cycles,
        recent_cycle_skips,
        consecutive_skips,
        next_charge_date,

        last_order_date,
        last_order_status,
        last_shipped_date,
        last_delivery_date,
        last_delivery_status,
        cast(recent_orders as {{ as_text }}) as recent_orders,
        favourite_product_id,
        favourite_product_name,
        cast(products_tried as {{ as_text }}) as products_tried,

        payment_health,
        failed_payments_last_90d,
        last_payment_failure_date,
        last_payment_failure_reason,

        channel_preference,
        tone_preference,

        tickets_total,
        cast(coalesce(email_tickets, 0) as integer) as email_tickets,
        cast(coalesce(chat_tickets, 0) as integer) as chat_tickets,
        cast(coalesce(phone_tickets, 0) as integer) as phone_tickets,
        open_tickets,
        cast(open_ticket_ids as {{ as_text }}) as open_ticket_ids,
        cast(open_ticket_topics as {{ as_text }}) as open_ticket_topics,
        has_repeat_issue,
        repeat_issue_topic,
        cast(coalesce(repeat_issues_in_lookback, 0) as integer) as repeat_issues_in_lookback,
        cast(repeat_issue_topics as {{ as_text }}) as repeat_issue_topics,
        last_ticket_at,
        cast(last_ticket_channel as {{ as_text }}) as last_ticket_channel,
        cast(last_ticket_topic as {{ as_text }}) as last_ticket_topic,
        cast(ticket_history as {{ as_text }}) as ticket_history,
        avg_csat

    from joined

)

select * from final
