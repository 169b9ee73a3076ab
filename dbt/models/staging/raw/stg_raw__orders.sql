-- A table, not a view: a dozen models and tests read the orders on every run, and each
-- read of a view would deduplicate them all again. Rebuilt in full every run: an order
-- changes after it is placed (shipped, delivered, refunded), so none is ever settled.

{{ config(materialized='table') }}

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

deduped as (

    -- an order is re-sent as it ships and is delivered: keep the furthest state
    {{ deduplicate('renamed', 'order_id',
                   'coalesce(delivered_at, shipped_at, ordered_at) desc', mostly_unique=true) }}

)

select * from deduped
