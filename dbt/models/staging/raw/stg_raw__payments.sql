-- A table, not a view, like stg_raw__email_events: a large event table every daily run
-- reads; a run stages only the rows from the days that may have changed.

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='payment_id',
    on_schema_change='fail',
) }}

with

source as (

    select * from {{ source('raw', 'payments') }}
    {{ events_since_last_run('attempted_at') }}

),

renamed as (

    select

        ----------  ids
        cast(payment_id as {{ dbt.type_string() }}) as payment_id,
        cast(customer_id as {{ dbt.type_string() }}) as customer_id,
        cast(order_id as {{ dbt.type_string() }}) as order_id,

        ---------- strings
        lower(trim(status)) as payment_status,
        lower(nullif(trim(failure_reason), '')) as failure_reason,

        ---------- numerics
        cast(amount as {{ type_money() }}) as amount,

        ---------- timestamps
        cast(attempted_at as {{ dbt.type_timestamp() }}) as attempted_at

    from source
    where payment_id is not null

),

deduped as (

    {{ deduplicate('renamed', 'payment_id', 'attempted_at desc', mostly_unique=true) }}

)

select * from deduped
