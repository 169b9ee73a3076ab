-- A stay in a segment cannot end before it starts.
select membership_id, entered_at, exited_at
from {{ ref('customer_segment_history') }}
where exited_at < entered_at
