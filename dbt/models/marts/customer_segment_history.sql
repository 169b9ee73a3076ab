-- When each customer entered and left each segment. Every run compares today's
-- customer_segments with the open rows: new memberships open a row (entered_at =
-- as_of), memberships that ended are closed (exited_at = as_of). Re-running with the
-- same as_of changes nothing. Run as_of forward in time; a full refresh restarts
-- the history at the current as_of.

{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='membership_id',
        on_schema_change='fail'
    )
}}

with

current_segments as (

    select customer_id, segment from {{ ref('customer_segments') }}

),

{% if is_incremental() %}

open_rows as (

    select * from {{ this }}
    where exited_at is null

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
      and open_rows.entered_at <= {{ as_of_date() }}

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
