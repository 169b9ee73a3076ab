-- A table, not a view: a dozen models and tests read the orders on every run, and each
-- read of a view would deduplicate them all again. An order changes after it is placed
-- (shipped, delivered, refunded), so none is ever settled: an incremental run restages
-- the orders with a raw row this table does not hold yet, whatever their date, and drops
-- those gone from raw (macros/incremental.sql), which equals a full rebuild.

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='order_id',
    on_schema_change='fail',
    pre_hook="{{ drop_keys_gone_from_raw('order_id',
        'select cast(order_id as ' ~ dbt.type_string() ~ ') from ' ~ source('raw', 'orders')
        ~ ' where order_id is not null') }}",
) }}

with

source as (

    select * from {{ source('raw', 'orders') }}

),

renamed as (

    select

        ----------  ids
        cast(order_id as {{ dbt.type_string() }}) as order_id,
        cast(customer_id as {{ dbt.type_string() }}) as customer_id,
        cast(subscription_id as {{ dbt.type_string() }}) as subscription_id,

        ---------- strings
        lower(trim(status)) as order_status,
        nullif(trim(discount_code), '') as discount_code,

        ---------- numerics
        cast(total as {{ type_money() }}) as order_total,

        ---------- booleans
        subscription_id is null as is_one_time_order,

        ---------- timestamps
        cast(ordered_at as {{ dbt.type_timestamp() }}) as ordered_at,
        cast(shipped_at as {{ dbt.type_timestamp() }}) as shipped_at,
        cast(delivered_at as {{ dbt.type_timestamp() }}) as delivered_at

    from source
    where order_id is not null

),

changed as (

    {{ keys_with_unstaged_rows('renamed', 'order_id') }}

),

deduped as (

    -- an order is re-sent as it ships and is delivered: keep the furthest state. A refund
    -- (or a retried payment, an unskip) changes no timestamp: at a tie the later status wins,
    -- not whichever copy the loader wrote first
    {{ deduplicate('changed', 'order_id',
                   "coalesce(delivered_at, shipped_at, ordered_at) desc, "
                   ~ "case order_status when 'refunded' then 0 when 'fulfilled' then 1 "
                   ~ "when 'failed' then 2 else 3 end", mostly_unique=true) }}

)

select * from deduped
