with

source as (

    select * from {{ source('raw', 'subscriptions') }}

),

renamed as (

    select

        ----------  ids
        cast(subscription_id as {{ dbt.type_string() }}) as subscription_id,
        cast(customer_id as {{ dbt.type_string() }}) as customer_id,
        cast(product_id as {{ dbt.type_string() }}) as product_id,

        ---------- strings
        lower(trim(plan)) as plan,
        lower(trim(status)) as subscription_status,
        lower(nullif(trim(cancel_reason), '')) as cancel_reason,

        ---------- numerics
        cast(cadence_days as {{ dbt.type_int() }}) as cadence_days,
        cast(price as {{ type_money() }}) as price,

        ---------- booleans
        cast(is_gift as {{ dbt.type_boolean() }}) as is_gift,

        ---------- timestamps
        cast(started_at as {{ dbt.type_timestamp() }}) as started_at,
        cast(cancelled_at as {{ dbt.type_timestamp() }}) as cancelled_at,
        cast(next_charge_at as {{ dbt.type_timestamp() }}) as next_charge_at

    from source
    where subscription_id is not null

),

deduped as (

    -- the latest state of a subscription is the one that happened last
    {{ deduplicate('renamed', 'subscription_id',
                   'coalesce(cancelled_at, next_charge_at, started_at) desc', mostly_unique=true) }}

)

select * from deduped
