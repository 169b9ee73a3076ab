-- One row per customer with yes/no tags for audience filters: live subscriber, high
-- lifetime value, gift recipient, at risk, brand advocate. Thresholds are dbt vars.

{{ check_threshold_vars() }}
{{ require_context_at_as_of() }}

with

customers as (

    select * from {{ ref('customer_context') }}

),

segments as (

    select * from {{ ref('customer_segments') }}

),

at_risk as (

    select distinct customer_id from segments
    where segment = 'at_risk'

),

predictions as (

    select * from {{ customer_predictions() }}

),

ltv_ranked as (

    select
        customers.customer_id,
        -- share of paying customers worth this much or more: what they have spent plus
        -- what they are predicted to spend in the next 12 months (historic alone until
        -- predictions exist)
        cume_dist() over (
            order by customers.lifetime_value + coalesce(predictions.predicted_clv_12m, 0) desc
        ) as ltv_top_share

    from customers
    left join predictions
        on customers.customer_id = predictions.customer_id
    where customers.lifetime_value > 0

),

final as (

    select
        cast(customers.customer_id as {{ dbt.type_string() }}) as customer_id,
        -- a gift runs out on its own, so the recipient is not (yet) a subscriber we can keep
        customers.is_subscriber and not customers.is_gift as live_subscriber,
        coalesce(ltv_ranked.ltv_top_share <= {{ var('high_ltv_top_share') }}, false) as high_ltv,
        customers.has_gift_subscription as gift_recipient,
        at_risk.customer_id is not null as at_risk,
        (
            customers.tenure_days >= {{ var('brand_advocate_min_tenure_days') }}
            and customers.is_subscriber
            and customers.skips_last_90d = 0
            and at_risk.customer_id is null
            and (
                coalesce(customers.avg_csat >= {{ var('brand_advocate_min_csat') }}, false)
                or customers.clicks_last_90d >= {{ var('brand_advocate_min_clicks_90d') }}
            )
        ) as brand_advocate,
        customers.as_of_date

    from customers
    left join ltv_ranked
        on customers.customer_id = ltv_ranked.customer_id
    left join at_risk
        on customers.customer_id = at_risk.customer_id

)

select * from final
