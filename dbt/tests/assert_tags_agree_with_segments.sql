-- Attached to customer_tags as a Dagster asset check (the test reads several models).
{{ config(meta={'dagster': {'ref': {'name': 'customer_tags'}}}) }}
-- The at_risk tag and the at_risk segment never disagree, and every customer in
-- context has exactly one tag row.
with

tags as (

    select * from {{ ref('customer_tags') }}

),

at_risk as (

    select customer_id from {{ ref('customer_segments') }}
    where segment = 'at_risk'

),

customers as (

    select customer_id from {{ ref('customer_context') }}

)

select tags.customer_id, 'at_risk tag without segment' as problem
from tags
left join at_risk on tags.customer_id = at_risk.customer_id
where tags.at_risk and at_risk.customer_id is null

union all

select at_risk.customer_id, 'at_risk segment without tag' as problem
from at_risk
inner join tags on at_risk.customer_id = tags.customer_id
where not tags.at_risk

union all

select customers.customer_id, 'no tag row' as problem
from customers
left join tags on customers.customer_id = tags.customer_id
where tags.customer_id is null
