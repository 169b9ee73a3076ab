-- One row per support ticket up to the as_of day, with what the customer's own words
-- tell us (length, greeting) and whether it repeats an issue: the same topic raised
-- again within var repeat_issue_window_days of the previous ticket on it.

with

tickets as (

    select * from {{ ref('stg_raw__support_tickets') }}

),

in_window as (

    select
        *,
        -- raw holds today's status; resolved after the as_of day = still open then
        (is_open or resolved_at >= {{ as_of_end() }}) as is_open_as_of,
        {{ word_count('body') }} as body_word_count,
        coalesce({{ starts_with_greeting('body') }}, false) as body_has_greeting,
        lag(created_at) over (
            partition by customer_id, topic order by created_at, ticket_id
        ) as previous_same_topic_at

    from tickets
    where created_at < {{ as_of_end() }}

),

final as (

    select
        ticket_id,
        customer_id,
        created_at,
        resolved_at,
        ticket_channel,
        topic,
        ticket_status,
        is_open_as_of,
        csat,
        body,
        body_word_count,
        body_has_greeting,
        previous_same_topic_at,
        {{ dbt.datediff('previous_same_topic_at', 'created_at', 'day') }}
            as days_since_same_topic,
        coalesce(
            {{ dbt.datediff('previous_same_topic_at', 'created_at', 'day') }}
                <= {{ var('repeat_issue_window_days') }},
            false
        ) as is_repeat_issue,
        {{ days_before_as_of('created_at') }} as days_before_as_of

    from in_window

)

select * from final
