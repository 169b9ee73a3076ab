-- A table, not a view, like stg_raw__orders (read by as many models; rebuilt every run).

{{ config(materialized='table') }}

with

source as (

    select * from {{ source('raw', 'order_items') }}

),

renamed as (

    select

        ----------  ids
        {{ dbt.concat(['cast(order_id as ' ~ dbt.type_string() ~ ')', "'|'",
                       'cast(product_id as ' ~ dbt.type_string() ~ ')']) }} as order_item_id,
        cast(order_id as {{ dbt.type_string() }}) as order_id,
        cast(product_id as {{ dbt.type_string() }}) as product_id,

        ---------- numerics
        cast(quantity as {{ dbt.type_int() }}) as quantity,
        cast(unit_price as {{ type_money() }}) as unit_price,
        cast(quantity * unit_price as {{ type_money() }}) as line_total,

        ---------- booleans
        cast(is_one_time as {{ dbt.type_boolean() }}) as is_one_time

    from source
    where order_id is not null and product_id is not null

),

deduped as (

    -- no timestamp on lines: keep one per (order, product), the largest quantity
    {{ deduplicate('renamed', 'order_item_id', 'quantity desc', mostly_unique=true) }}

)

select * from deduped
