-- A table, not a view, like stg_raw__email_events: a large event table every daily run
-- reads; a run stages only the rows from the days that may have changed.

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='portal_event_id',
    on_schema_change='fail',
) }}

with

source as (

    select * from {{ source('raw', 'portal_events') }}
    {{ events_since_last_run('occurred_at') }}

),

renamed as (

    select

        ----------  ids
        cast(event_id as {{ dbt.type_string() }}) as portal_event_id,
        cast(customer_id as {{ dbt.type_string() }}) as customer_id,

        ---------- strings
        lower(trim(event_type)) as event_type,
        -- JSON text, parsed downstream only where a model needs a field
        properties,

        ---------- timestamps
        cast(occurred_at as {{ dbt.type_timestamp() }}) as occurred_at

    from source
    where event_id is not null

),

deduped as (

    {{ deduplicate('renamed', 'portal_event_id', 'occurred_at desc', mostly_unique=true) }}

)

select * from deduped
