-- Attached to customer_segments as a Dagster asset check (the test reads several models).
{{ config(meta={'dagster': {'ref': {'name': 'customer_segments'}}}) }}
-- Every cadence_mismatch member really skipped at least var cadence_mismatch_min_skips
-- of their last var cadence_mismatch_cycles deliveries, recounted from the orders.
with

members as (

    select customer_id
    from {{ ref('customer_segments') }}
    where segment = 'cadence_mismatch'

),

last_cycles as (

    -- the members' orders only: ranking every subscriber's orders cost 2.7 s at 1M subscribers
    select
        customer_id,
        order_status,
        row_number() over (partition by customer_id order by ordered_at desc, order_id desc) as recency_rank

    from {{ ref('stg_raw__orders') }}
    where subscription_id is not null
      and ordered_at < {{ as_of_end() }}
      and customer_id in (select customer_id from members)

),

skips as (

    select
        customer_id,
        count(*) as cycles,
        sum(case when order_status = 'skipped' then 1 else 0 end) as skipped

    from last_cycles
    where recency_rank <= {{ var('cadence_mismatch_cycles') }}
    group by customer_id

)

select members.customer_id, skips.cycles, skips.skipped
from members
left join skips
    on members.customer_id = skips.customer_id
where (
      skips.customer_id is null
      or skips.cycles < {{ var('cadence_mismatch_cycles') }}
      or skips.skipped < {{ var('cadence_mismatch_min_skips') }}
      or skips.skipped > {{ var('cadence_mismatch_max_skips') }}
  )
