-- One row per subscription cycle (a subscription order) up to the as_of day,
-- numbered per customer from the latest (cycles_ago = 0), with the skip pattern:
-- whether the cycle was skipped and whether that flips the previous cycle.
-- Incremental: a daily run renumbers only the customers with an order on a day that may
-- have changed (var incremental_lookback_days; macros/incremental.sql); a run at an
-- earlier as_of first drops the cycles after it.

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='customer_id',
    on_schema_change='fail',
    pre_hook="{{ drop_rows_after_as_of('ordered_at') }}",
) }}

with

orders as (

    select * from {{ ref('stg_raw__orders') }}

),

cycles as (

    select
        order_id,
        customer_id,
        subscription_id,
        ordered_at,
        order_status,
        order_total,
        order_status = 'skipped' as is_skipped

    from orders
    where subscription_id is not null
      and ordered_at < {{ as_of_end() }}
      {%- if is_incremental() %}
      and customer_id in (
          -- with an order on a day that may have changed (or, at an earlier as_of, was dropped)
          select customer_id from orders
          where subscription_id is not null
            and ordered_at >= cast({{ incremental_start('cast(ordered_at as date)') }} as {{ dbt.type_timestamp() }})
      )
      {%- endif %}

),

numbered as (

    select
        *,
        -- per customer, not per subscription: an upgrade starts a new subscription
        -- but the customer's rhythm of deliveries carries on
        row_number() over (
            partition by customer_id order by ordered_at desc, order_id desc
        ) - 1 as cycles_ago,
        lag(order_status = 'skipped') over (
            partition by customer_id order by ordered_at, order_id
        ) as previous_cycle_skipped

    from cycles

),

final as (

    select
        *,
        previous_cycle_skipped is not null
            and is_skipped <> previous_cycle_skipped as is_pattern_flip

    from numbered

)

select * from final
