-- Per customer: the product they have received most (units over fulfilled orders,
-- subscription deliveries included); ties go to the one ordered most recently.

with

orders as (

    select * from {{ ref('stg_raw__orders') }}
    where order_status = 'fulfilled'
      and ordered_at < {{ as_of_end() }}

),

order_items as (

    select * from {{ ref('stg_raw__order_items') }}

),

products as (

    select * from {{ ref('stg_raw__products') }}

),

units_per_product as (

    select
        orders.customer_id,
        order_items.product_id,
        sum(order_items.quantity) as units_ordered,
        max(orders.ordered_at) as last_ordered_at

    from order_items
    inner join orders
        on order_items.order_id = orders.order_id
    group by 1, 2

),

favourite as (

    {{ deduplicate('units_per_product', 'customer_id',
                   'units_ordered desc, last_ordered_at desc, product_id') }}

),

final as (

    select
        favourite.customer_id,
        favourite.product_id as favourite_product_id,
        products.product_name as favourite_product_name,
        favourite.units_ordered as favourite_product_units

    from favourite
    left join products
        on favourite.product_id = products.product_id

)

select * from final
