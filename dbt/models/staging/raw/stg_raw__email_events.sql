-- A table, not a view: ESP events are the largest raw table and every daily run reads
-- them. Incremental: a run stages only the rows from the days that may have changed
-- (macros/incremental.sql), so readers and tests do not deduplicate all history again.

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='email_event_id',
    on_schema_change='fail',
) }}

with

source as (

    select * from {{ source('raw', 'email_events') }}
    {{ events_since_last_run('occurred_at') }}

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

    {{ deduplicate('renamed', 'email_event_id', 'occurred_at desc', mostly_unique=true) }}

)

select * from deduped
