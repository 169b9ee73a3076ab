-- Per customer: what they have spent with us up to the as_of day - the sum of
-- fulfilled order totals (skipped, failed and refunded orders earn nothing).

with

orders as (

    select * from {{ ref('stg_raw__orders') }}

),

fulfilled as (

    select * from orders
    where order_status = 'fulfilled'
      and ordered_at < {{ as_of_end() }}

),

final as (

    select
        customer_id,
        cast(sum(order_total) as {{ type_money() }}) as lifetime_value,
        count(*) as fulfilled_orders,
        cast(avg(order_total) as {{ type_money() }}) as average_order_value,
        min(ordered_at) as first_fulfilled_order_at,
        max(ordered_at) as last_fulfilled_order_at

    from fulfilled
    group by customer_id

)

select * from final
