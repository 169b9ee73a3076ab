-- A table, not a view, like stg_raw__orders (read by as many models), and incremental
-- like it: a run restages the lines with a raw row this table does not hold yet (an order
-- gains a line, a quantity is corrected) and drops those gone from raw.

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='order_item_id',
    on_schema_change='fail',
    pre_hook="{{ drop_keys_gone_from_raw('order_item_id',
        'select ' ~ order_item_id('order_id', 'product_id') ~ ' from ' ~ source('raw', 'order_items')
        ~ ' where order_id is not null and product_id is not null') }}",
) }}

with

source as (

    select * from {{ source('raw', 'order_items') }}

),

renamed as (

    select

        ----------  ids
        {{ order_item_id('order_id', 'product_id') }} as order_item_id,
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

changed as (

    {{ keys_with_unstaged_rows('renamed', 'order_item_id') }}

),

deduped as (

    -- no timestamp on lines: keep one per (order, product), the largest quantity
    {{ deduplicate('changed', 'order_item_id', 'quantity desc', mostly_unique=true) }}

)

select * from deduped
