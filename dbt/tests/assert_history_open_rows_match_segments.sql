-- Attached to customer_segment_history as a Dagster asset check (the test reads several models).
{{ config(meta={'dagster': {'ref': {'name': 'customer_segment_history'}}}) }}
-- After the history has run at the segments' as_of, its open rows are exactly the
-- current memberships. (Checked only when the history's latest change is on that
-- day, so building customer_segments alone does not raise a false alarm.)
with

history_changes as (

    select max(entered_at) as last_change from {{ ref('customer_segment_history') }}
    union all
    select max(exited_at) as last_change from {{ ref('customer_segment_history') }}

),

in_step as (

    select 1 as ok
    from history_changes
    where last_change = (select max(as_of_date) from {{ ref('customer_segments') }})

),

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
where exists (select 1 from in_step)
union all
select * from stale_in_history
where exists (select 1 from in_step)
