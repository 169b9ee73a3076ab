-- After a run, the open history rows are exactly today's segment memberships.
with

open_rows as (

    select customer_id, segment from {{ ref('customer_segment_history') }}
    where exited_at is null

),

current_segments as (

    select customer_id, segment from {{ ref('customer_segments') }}

),

missing_from_history as (

    select current_segments.customer_id, current_segments.segment, 'not open in history' as problem
    from current_segments
    left join open_rows
        on current_segments.customer_id = open_rows.customer_id
        and current_segments.segment = open_rows.segment
    where open_rows.customer_id is null

),

stale_in_history as (

    select open_rows.customer_id, open_rows.segment, 'open in history, not in segment' as problem
    from open_rows
    left join current_segments
        on open_rows.customer_id = current_segments.customer_id
        and open_rows.segment = current_segments.segment
    where current_segments.customer_id is null

)

select * from missing_from_history
union all
select * from stale_in_history
