-- Per customer: their latest order and delivery, orders and skips in the last
-- 30 / 90 days, and one-time add-ons (items added on top of the subscription).

with

orders as (

    select * from {{ ref('stg_raw__orders') }}
    where ordered_at < {{ as_of_end() }}

),

order_items as (

    select * from {{ ref('stg_raw__order_items') }}

),

latest_order as (

    {{ deduplicate('orders', 'customer_id', 'ordered_at desc, order_id desc', many_per_key=true) }}

),

shipments as (

    select * from orders
    where shipped_at < {{ as_of_end() }}

),

latest_shipment as (

    {{ deduplicate('shipments', 'customer_id', 'shipped_at desc, order_id desc', many_per_key=true) }}

),

add_ons as (

    select
        orders.customer_id,
        orders.ordered_at,
        {{ days_before_as_of('orders.ordered_at') }} as days_before_as_of

    from order_items
    inner join orders
        on order_items.order_id = orders.order_id
    where order_items.is_one_time
      and orders.order_status <> 'skipped'

),

add_on_windows as (

    select
        customer_id,
        sum(case when days_before_as_of < 30 then 1 else 0 end) as one_time_addons_last_30d,
        sum(case when days_before_as_of < 90 then 1 else 0 end) as one_time_addons_last_90d,
        max(ordered_at) as last_one_time_addon_at

    from add_ons
    group by customer_id

),

order_windows as (

    select
        customer_id,
        count(*) as lifetime_orders,
        sum(case when order_status = 'fulfilled'
                  and {{ days_before_as_of('ordered_at') }} < 30 then 1 else 0 end)
            as orders_last_30d,
        sum(case when order_status = 'fulfilled'
                  and {{ days_before_as_of('ordered_at') }} < 90 then 1 else 0 end)
            as orders_last_90d,
        sum(case when order_status = 'skipped'
                  and {{ days_before_as_of('ordered_at') }} < 30 then 1 else 0 end)
            as skips_last_30d,
        sum(case when order_status = 'skipped'
                  and {{ days_before_as_of('ordered_at') }} < 90 then 1 else 0 end)
            as skips_last_90d,
        max(case when order_status = 'fulfilled' then ordered_at end) as last_fulfilled_order_at

    from orders
    group by customer_id

),

final as (

    select
        order_windows.*,
        latest_order.ordered_at as last_order_at,
        latest_order.order_status as last_order_status,
        latest_shipment.shipped_at as last_shipped_at,
        case
            when latest_shipment.delivered_at < {{ as_of_end() }}
                then latest_shipment.delivered_at
        end as last_delivered_at,
        case
            when latest_shipment.order_id is null then null
            when latest_shipment.delivered_at < {{ as_of_end() }} then 'delivered'
            else 'in_transit'
        end as last_delivery_status,
        coalesce(add_on_windows.one_time_addons_last_30d, 0) as one_time_addons_last_30d,
        coalesce(add_on_windows.one_time_addons_last_90d, 0) as one_time_addons_last_90d,
        add_on_windows.last_one_time_addon_at

    from order_windows
    inner join latest_order
        on order_windows.customer_id = latest_order.customer_id
    left join latest_shipment
        on order_windows.customer_id = latest_shipment.customer_id
    left join add_on_windows
        on order_windows.customer_id = add_on_windows.customer_id

)

select * from final
