-- The customer's latest orders up to the as_of day (var service_recent_orders, default 3),
-- one row each, with where the parcel is: what an agent reads before answering
-- "where is my order?".

with

orders as (

    select * from {{ ref('stg_raw__orders') }}
    where ordered_at < {{ as_of_end() }}

),

ranked as (

    select
        order_id,
        customer_id,
        subscription_id,
        ordered_at,
        order_status,
        order_total,
        -- raw holds today's state: a shipment or delivery after the as_of day had not happened yet
        case when shipped_at < {{ as_of_end() }} then shipped_at end as shipped_at,
        case when delivered_at < {{ as_of_end() }} then delivered_at end as delivered_at,
        row_number() over (
            partition by customer_id order by ordered_at desc, order_id desc
        ) as recent_order_rank

    from orders

),

final as (

    select
        *,
        case
            when order_status in ('skipped', 'failed', 'refunded') then order_status
            when delivered_at is not null then 'delivered'
            when shipped_at is not null then 'in_transit'
            else 'awaiting_shipment'
        end as shipping_status

    from ranked
    where recent_order_rank <= {{ var('service_recent_orders', 3) }}

)

select * from final
