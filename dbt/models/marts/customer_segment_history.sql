-- When each customer entered and left each segment. Every run compares today's
-- customer_segments with the rows open before the as_of day: new memberships open a row
-- (entered_at = as_of), memberships that ended are closed (exited_at = as_of). A run first
-- takes back what runs at this as_of or later wrote (the pre-hook deletes the rows they
-- opened; rows they closed count as open again), so re-running the same as_of with the
-- same data changes nothing, with corrected data rewrites that day, and a run at an
-- earlier as_of gives the history as it stood after that day (run on from there to
-- rebuild the days after it). Run as_of forward in time; a full refresh restarts the
-- history at the current as_of.

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='membership_id',
        on_schema_change='fail',
        pre_hook="{{ drop_rows_from_as_of('entered_at') }}"
    )
}}

with

current_segments as (

    select customer_id, segment from {{ ref('customer_segments') }}

),

{% if is_incremental() %}

open_rows as (

    -- the stays open before the as_of day (all rows left were entered before it): still
    -- open, or closed by a run at this as_of or later
    select * from {{ this }}
    where exited_at is null
       or exited_at >= {{ as_of_date() }}

),

closed_now as (

    -- open rows whose membership has ended: same key, now with an exit date
    select
        open_rows.membership_id,
        open_rows.customer_id,
        open_rows.segment,
        open_rows.entered_at,
        {{ as_of_date() }} as exited_at

    from open_rows
    left join current_segments
        on open_rows.customer_id = current_segments.customer_id
        and open_rows.segment = current_segments.segment
    where current_segments.customer_id is null

),

reopened as (

    -- rows a run at this as_of or later closed, whose membership goes on at as_of
    select
        open_rows.membership_id,
        open_rows.customer_id,
        open_rows.segment,
        open_rows.entered_at,
        cast(null as date) as exited_at

    from open_rows
    inner join current_segments
        on open_rows.customer_id = current_segments.customer_id
        and open_rows.segment = current_segments.segment
    where open_rows.exited_at is not null

),

entered_now as (

    select
        current_segments.customer_id,
        current_segments.segment

    from current_segments
    left join open_rows
        on current_segments.customer_id = open_rows.customer_id
        and current_segments.segment = open_rows.segment
    where open_rows.customer_id is null

),

{% else %}

entered_now as (

    select * from current_segments

),

{% endif %}

opened as (

    select
        {{ dbt.concat([
            'customer_id', "'|'", 'segment', "'|'",
            'cast(' ~ as_of_date() ~ ' as ' ~ dbt.type_string() ~ ')']) }} as membership_id,
        customer_id,
        segment,
        {{ as_of_date() }} as entered_at,
        cast(null as date) as exited_at

    from entered_now

),

changes as (

    select * from opened
    {% if is_incremental() %}
    union all
    select * from closed_now
    union all
    select * from reopened
    {% endif %}

),

final as (

    select
        cast(membership_id as {{ dbt.type_string() }}) as membership_id,
        cast(customer_id as {{ dbt.type_string() }}) as customer_id,
        cast(segment as {{ dbt.type_string() }}) as segment,
        cast(entered_at as date) as entered_at,
        cast(exited_at as date) as exited_at

    from changes

)

select * from final
