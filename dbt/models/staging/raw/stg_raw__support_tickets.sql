-- A table, not a view, like stg_raw__orders: its tests (a dozen) and the ticket models each
-- read it, and each read of a view would deduplicate every ticket again (at 1M subscribers,
-- 1.76M tickets: the tests took 5.9 s on the view, 3.1 s on the table, which costs 1.3 s).
-- Rebuilt every run: a ticket changes after it is opened (solved, rated).

{{ config(materialized='table') }}

with

source as (

    select * from {{ source('raw', 'support_tickets') }}

),

renamed as (

    select

        ----------  ids
        cast(ticket_id as {{ dbt.type_string() }}) as ticket_id,
        cast(customer_id as {{ dbt.type_string() }}) as customer_id,

        ---------- strings
        lower(trim(channel)) as ticket_channel,
        lower(trim(topic)) as topic,
        lower(trim(status)) as ticket_status,
        body,

        ---------- numerics
        cast(csat as {{ dbt.type_int() }}) as csat,

        ---------- booleans
        lower(trim(status)) in ('open', 'pending') as is_open,

        ---------- timestamps
        cast(created_at as {{ dbt.type_timestamp() }}) as created_at,
        cast(resolved_at as {{ dbt.type_timestamp() }}) as resolved_at

    from source
    where ticket_id is not null

),

deduped as (

    -- a ticket is re-sent as it is worked on: keep its latest state. Closing or rating a
    -- solved ticket keeps its resolved_at: at a tie the later status, then the rated copy wins
    {{ deduplicate('renamed', 'ticket_id',
                   "coalesce(resolved_at, created_at) desc, "
                   ~ "case ticket_status when 'closed' then 0 when 'solved' then 1 when 'pending' then 2 else 3 end, "
                   ~ "case when csat is null then 1 else 0 end", mostly_unique=true) }}

)

select * from deduped
