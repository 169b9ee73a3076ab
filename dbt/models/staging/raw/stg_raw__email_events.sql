with

source as (

    select * from {{ source('raw', 'email_events') }}

),

renamed as (

    select

        ----------  ids
        cast(event_id as {{ dbt.type_string() }}) as email_event_id,
        cast(customer_id as {{ dbt.type_string() }}) as customer_id,
        cast(campaign_id as {{ dbt.type_string() }}) as campaign_id,
        cast(message_id as {{ dbt.type_string() }}) as message_id,

        ---------- strings
        lower(trim(event_type)) as event_type,

        ---------- timestamps
        cast(occurred_at as {{ dbt.type_timestamp() }}) as occurred_at

    from source
    where event_id is not null

),

deduped as (

    {{ deduplicate('renamed', 'email_event_id', 'occurred_at desc') }}

)

select * from deduped
