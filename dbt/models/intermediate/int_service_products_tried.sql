-- One row per customer and product they have already had (received in a fulfilled
-- order, or subscribed to), up to the as_of day: a swap offer must name something new.

with

orders as (

    select * from {{ ref('stg_raw__orders') }}
    where ordered_at < {{ as_of_end() }}
      and order_status = 'fulfilled'

),

order_items as (

    select * from {{ ref('stg_raw__order_items') }}

),

subscriptions as (

    select * from {{ ref('int_subscriptions_as_of') }}

),

received as (

    select orders.customer_id, order_items.product_id
    from orders
    inner join order_items
        on orders.order_id = order_items.order_id

),

subscribed as (

    select customer_id, product_id from subscriptions

),

final as (

    select distinct customer_id, product_id
    from (
        select * from received
        union all
        select * from subscribed
    ) as tried

)

select * from final
