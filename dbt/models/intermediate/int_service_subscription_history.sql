-- Per customer: every subscription they have had up to the as_of day, counted and
-- written out newest first, so an agent sees upgrades, cancellations and gifts at once:
-- "Ridge Espresso (single_bag, every 28 days) started 2024-10-31, cancelled 2026-07-19 (price)".
-- A pause is not dated here (raw.subscriptions holds no pause date).

with

subscriptions as (

    select * from {{ ref('int_subscriptions_as_of') }}

),

products as (

    select * from {{ ref('stg_raw__products') }}

),

described as (

    select
        subscriptions.customer_id,
        subscriptions.subscription_id,
        subscriptions.started_at,
        subscriptions.subscription_status,
        subscriptions.cancel_reason,
        subscriptions.cancelled_at,
        {{ dbt.concat([
            "coalesce(products.product_name, subscriptions.product_id)",
            "' ('", "subscriptions.plan", "', every '",
            "cast(subscriptions.cadence_days as " ~ dbt.type_string() ~ ")",
            "' days) started '", "cast(cast(subscriptions.started_at as date) as " ~ dbt.type_string() ~ ")",
            "', '", "subscriptions.subscription_status",
            "coalesce(" ~ dbt.concat(["' '", "cast(cast(subscriptions.cancelled_at as date) as "
                                            ~ dbt.type_string() ~ ")"]) ~ ", '')",
            "coalesce(" ~ dbt.concat(["' ('", "subscriptions.cancel_reason", "')'"]) ~ ", '')",
        ]) }} as subscription_line

    from subscriptions
    left join products
        on subscriptions.product_id = products.product_id

),

final as (

    select
        customer_id,
        count(*) as subscriptions_total,
        sum(case when subscription_status = 'cancelled' then 1 else 0 end) as cancelled_subscriptions,
        sum(case when cancel_reason = 'upgraded' then 1 else 0 end) as upgrades,
        min(started_at) as first_subscribed_at,
        {{ dbt.listagg('subscription_line', "'; '",
                       'order by started_at desc, subscription_id desc') }} as subscription_history

    from described
    group by customer_id

)

select * from final
