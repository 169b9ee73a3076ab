-- Attached to customer_segments as a Dagster asset check (the test reads several models).
{{ config(meta={'dagster': {'ref': {'name': 'customer_segments'}}}) }}
-- Win-back targets people who left: no win_back member has a live subscription,
-- and every one of them cancelled within var win_back_window_days.
select segments.customer_id
from {{ ref('customer_segments') }} as segments
inner join {{ ref('customer_context') }} as customers
    on segments.customer_id = customers.customer_id
where segments.segment = 'win_back'
  and (
      customers.is_subscriber
      or customers.last_cancelled_at is null
      or {{ days_before_as_of('customers.last_cancelled_at') }} >= {{ var('win_back_window_days') }}
  )
