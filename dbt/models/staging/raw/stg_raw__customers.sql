with

source as (

    select * from {{ source('raw', 'customers') }}

),

renamed as (

    select

        ----------  ids
        cast(customer_id as {{ dbt.type_string() }}) as customer_id,

        ---------- strings
        lower(trim(email)) as email,
        nullif(trim(first_name), '') as first_name,
        upper(nullif(trim(country), '')) as country,
        nullif(trim(timezone), '') as timezone,
        lower(nullif(trim(channel_preference), '')) as channel_preference,

        ---------- booleans
        cast(marketing_opt_in as {{ dbt.type_boolean() }}) as marketing_opt_in,

        ---------- timestamps
        cast(created_at as {{ dbt.type_timestamp() }}) as created_at

    from source
    where customer_id is not null

),

deduped as (

    -- a loader that appends keeps every version of a customer: keep the latest
    {{ deduplicate('renamed', 'customer_id', 'created_at desc', mostly_unique=true) }}

)

select * from deduped
