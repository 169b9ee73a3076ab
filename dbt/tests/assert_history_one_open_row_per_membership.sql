-- A customer is in a segment at most once at a time: one open history row per
-- (customer, segment).
select customer_id, segment, count(*) as open_rows
from {{ ref('customer_segment_history') }}
where exited_at is null
group by customer_id, segment
having count(*) > 1
