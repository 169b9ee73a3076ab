with

source as (

    select * from {{ source('raw', 'products') }}

),

renamed as (

    select

        ----------  ids
        cast(product_id as {{ dbt.type_string() }}) as product_id,

        ---------- strings
        trim(name) as product_name,
        lower(trim(category)) as category,

        ---------- numerics
        cast(price as {{ type_money() }}) as price,

        ---------- booleans
        cast(active as {{ dbt.type_boolean() }}) as is_active,
        cast(subscription_eligible as {{ dbt.type_boolean() }}) as is_subscription_eligible

    from source
    where product_id is not null

),

deduped as (

    -- the catalog has no timestamp to tell versions apart: prefer the row on sale
    {{ deduplicate('renamed', 'product_id', 'is_active desc, price desc') }}

)

select * from deduped
