with

source as (

    select * from {{ source('raw', 'payments') }}

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

    {{ deduplicate('renamed', 'payment_id', 'attempted_at desc') }}

)

select * from deduped
