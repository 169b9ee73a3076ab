-- Subscriptions as they stood at the end of the as_of day, ranked per customer so
-- the "current" one (live first, then the most recently started) is rank 1.

with

subscriptions as (

    select * from {{ ref('stg_raw__subscriptions') }}

),

as_of_state as (

    select
        subscription_id,
        customer_id,
        product_id,
        plan,
        cadence_days,
        price,
        is_gift,
        started_at,
        next_charge_at,
        -- raw holds today's state; a later cancellation means it was still running
        -- on the as_of day (a pause cannot be dated from this table, so it stays)
        case
            when cancelled_at >= {{ as_of_end() }} then 'active'
            else subscription_status
        end as subscription_status,
        case when cancelled_at < {{ as_of_end() }} then cancelled_at end as cancelled_at,
        case when cancelled_at < {{ as_of_end() }} then cancel_reason end as cancel_reason

    from subscriptions
    where started_at < {{ as_of_end() }}

),

final as (

    select
        *,
        subscription_status in ('active', 'paused') as is_live,
        row_number() over (
            partition by customer_id
            order by
                case subscription_status when 'active' then 0 when 'paused' then 1 else 2 end,
                started_at desc,
                subscription_id
        ) as customer_subscription_rank

    from as_of_state

)

select * from final
