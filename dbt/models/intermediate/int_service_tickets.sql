-- Per customer: their support history across email, chat and phone in one place -
-- counts per channel, what is open now, repeat issues in the lookback window and the
-- latest tickets written out - built on int_ticket_history (repeat rule and tone live there).

with

tickets as (

    select * from {{ ref('int_ticket_history') }}

),

described as (

    select
        *,
        {{ dbt.concat([
            "cast(cast(created_at as date) as " ~ dbt.type_string() ~ ")",
            "' '", "ticket_channel", "' '", "topic", "' '",
            "case when is_open_as_of then 'open' else ticket_status end",
            "case when is_repeat_issue then ' (repeat)' else '' end",
        ]) }} as ticket_line,
        row_number() over (
            partition by customer_id order by created_at desc, ticket_id desc
        ) as recent_ticket_rank

    from tickets

),

per_customer as (

    select
        customer_id,
        sum(case when ticket_channel = 'email' then 1 else 0 end) as email_tickets,
        sum(case when ticket_channel = 'chat' then 1 else 0 end) as chat_tickets,
        sum(case when ticket_channel = 'phone' then 1 else 0 end) as phone_tickets,
        sum(case when is_repeat_issue
                  and days_before_as_of < {{ var('repeat_issue_lookback_days') }}
                 then 1 else 0 end) as repeat_issues_in_lookback

    from described
    group by customer_id

),

latest as (

    select
        customer_id,
        created_at as last_ticket_at,
        ticket_channel as last_ticket_channel,
        topic as last_ticket_topic

    from described
    where recent_ticket_rank = 1

),

open_tickets as (

    select
        customer_id,
        {{ dbt.listagg('ticket_id', "', '", 'order by created_at desc, ticket_id desc') }}
            as open_ticket_ids,
        {{ dbt.listagg('topic', "', '", 'order by created_at desc, ticket_id desc') }}
            as open_ticket_topics

    from described
    where is_open_as_of
    group by customer_id

),

repeat_topics as (

    -- distinct first: listagg(distinct ...) is not portable across warehouses
    select distinct customer_id, topic
    from described
    where is_repeat_issue
      and days_before_as_of < {{ var('repeat_issue_lookback_days') }}

),

repeat_topic_lists as (

    select
        customer_id,
        {{ dbt.listagg('topic', "', '", 'order by topic') }} as repeat_issue_topics

    from repeat_topics
    group by customer_id

),

history as (

    select
        customer_id,
        {{ dbt.listagg('ticket_line', "'; '", 'order by created_at desc, ticket_id desc') }}
            as ticket_history

    from described
    where recent_ticket_rank <= {{ var('service_recent_tickets', 5) }}
    group by customer_id

),

final as (

    select
        per_customer.customer_id,
        per_customer.email_tickets,
        per_customer.chat_tickets,
        per_customer.phone_tickets,
        per_customer.repeat_issues_in_lookback,
        latest.last_ticket_at,
        latest.last_ticket_channel,
        latest.last_ticket_topic,
        open_tickets.open_ticket_ids,
        open_tickets.open_ticket_topics,
        repeat_topic_lists.repeat_issue_topics,
        history.ticket_history

    from per_customer
    inner join latest
        on per_customer.customer_id = latest.customer_id
    left join open_tickets
        on per_customer.customer_id = open_tickets.customer_id
    left join repeat_topic_lists
        on per_customer.customer_id = repeat_topic_lists.customer_id
    left join history
        on per_customer.customer_id = history.customer_id

)

select * from final
