-- Attached to customer_segments as a Dagster asset check (the test reads several models).
{{ config(meta={'dagster': {'ref': {'name': 'customer_segments'}}}) }}
-- Every cadence_mismatch member really skipped at least var cadence_mismatch_min_skips
-- of their last var cadence_mismatch_cycles deliveries, recounted from the orders.
with

last_cycles as (

    select
        customer_id,
        order_status,
        row_number() over (partition by customer_id order by ordered_at desc, order_id desc) as recency_rank

    from {{ ref('stg_raw__orders') }}
    where subscription_id is not null
      and ordered_at < {{ as_of_end() }}

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

select segments.customer_id, skips.cycles, skips.skipped
from {{ ref('customer_segments') }} as segments
left join skips
    on segments.customer_id = skips.customer_id
where segments.segment = 'cadence_mismatch'
  and (
      skips.customer_id is null
      or skips.cycles < {{ var('cadence_mismatch_cycles') }}
      or skips.skipped < {{ var('cadence_mismatch_min_skips') }}
      or skips.skipped > {{ var('cadence_mismatch_max_skips') }}
  )
