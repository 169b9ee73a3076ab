-- Per customer: how their payments are going up to the as_of day - failures in the
-- last 90 days, the latest failure and its reason, and the latest attempt's outcome.

with

payments as (

    select * from {{ ref('stg_raw__payments') }}
    where attempted_at < {{ as_of_end() }}

),

latest_attempt as (

    {{ deduplicate('payments', 'customer_id', 'attempted_at desc, payment_id desc', many_per_key=true) }}

),

failures as (

    select * from payments
    where payment_status = 'failed'

),

latest_failure as (

    {{ deduplicate('failures', 'customer_id', 'attempted_at desc, payment_id desc', many_per_key=true) }}

),

per_customer as (

    select
        customer_id,
        count(*) as payment_attempts,
        sum(case when payment_status = 'failed'
                  and {{ days_before_as_of('attempted_at') }} < 90 then 1 else 0 end)
            as failed_payments_last_90d

    from payments
    group by customer_id

),

final as (

    select
        per_customer.customer_id,
        per_customer.payment_attempts,
        per_customer.failed_payments_last_90d,
        latest_attempt.payment_status as last_payment_status,
        latest_attempt.attempted_at as last_payment_at,
        latest_failure.attempted_at as last_payment_failure_at,
        latest_failure.failure_reason as last_payment_failure_reason,
        case
            when latest_attempt.payment_status = 'failed' then 'failing'
            when per_customer.failed_payments_last_90d > 0 then 'recovered'
            else 'healthy'
        end as payment_health

    from per_customer
    inner join latest_attempt
        on per_customer.customer_id = latest_attempt.customer_id
    left join latest_failure
        on per_customer.customer_id = latest_failure.customer_id

)

select * from final
