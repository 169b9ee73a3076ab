-- Per customer: support history (counts, open tickets, CSAT), the latest repeat
-- issue, and the tone they write in, learned from their own ticket bodies.

with

tickets as (

    select * from {{ ref('int_ticket_history') }}

),

per_customer as (

    select
        customer_id,
        count(*) as tickets_total,
        sum(case when days_before_as_of < 90 then 1 else 0 end) as tickets_last_90d,
        sum(case when is_open_as_of then 1 else 0 end) as open_tickets,
        max(created_at) as last_ticket_at,
        -- a rating comes with the resolution: one after the as_of day was not given yet
        avg(case when not is_open_as_of then cast(csat as {{ dbt.type_float() }}) end) as avg_csat,
        sum(case when body_word_count > 0 then 1 else 0 end) as tickets_with_body,
        avg(case when body_word_count > 0 then cast(body_word_count as {{ dbt.type_float() }}) end)
            as avg_body_words,
        avg(case when body_word_count > 0
                 then case when body_has_greeting then 1.0 else 0.0 end end) as greeting_share

    from tickets
    group by customer_id

),

repeats as (

    select
        customer_id,
        ticket_id,
        topic as repeat_issue_topic,
        created_at as repeat_issue_at

    from tickets
    where is_repeat_issue
      and days_before_as_of < {{ var('repeat_issue_lookback_days') }}

),

recent_repeats as (

    -- the latest repeat issue per customer
    {{ deduplicate('repeats', 'customer_id', 'repeat_issue_at desc, ticket_id desc') }}

),

final as (

    select
        per_customer.*,
        recent_repeats.repeat_issue_topic is not null as has_repeat_issue,
        recent_repeats.repeat_issue_topic,
        recent_repeats.repeat_issue_at,
        case
            when per_customer.tickets_with_body = 0 then 'unknown'
            when per_customer.greeting_share >= {{ var('tone_warm_greeting_share') }}
                or per_customer.avg_body_words >= {{ var('tone_warm_min_words') }}
                then 'warm'
            else 'brief'
        end as tone_preference

    from per_customer
    left join recent_repeats
        on per_customer.customer_id = recent_repeats.customer_id

)

select * from final
