-- The customers whose weekly point-in-time history (customer_features, customer_labels
-- and their int_features_*) is built for training: everyone when there are at most
-- var training_customers customers (by the end of the as_of day), else that many picked
-- at random, the same pick on every run and warehouse (the order of a hash of the id).
-- The scoring point does not use this: every customer is scored.

with

customers as (

    select customer_id from {{ ref('stg_raw__customers') }}
    where created_at < {{ as_of_end() }}

),

ranked as (

    select
        customer_id,
        row_number() over (order by {{ dbt.hash('customer_id') }}, customer_id) as sample_rank

    from customers

),

final as (

    select customer_id, sample_rank
    from ranked
    where sample_rank <= {{ var('training_customers') | int }}

)

select * from final
