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

    -- a ticket is re-sent as it is worked on: keep its latest state
    {{ deduplicate('renamed', 'ticket_id', 'coalesce(resolved_at, created_at) desc', mostly_unique=true) }}

)

select * from deduped
