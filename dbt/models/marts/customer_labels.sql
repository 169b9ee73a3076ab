-- One row per customer per point in time of customer_features: what happened in
-- the var label_window_days days from as_of_date (churned, skipped a delivery,
-- upgraded or added an item, converted on a discount message). A label is null when
-- the customer could not have had the outcome (e.g. no live subscription) or when
-- the window is not over yet by the as_of day; it never feeds a feature.
-- Incremental: a daily run recomputes the points whose outcomes may still change (a
-- label window, plus one more for conversions on a discount message sent late in it,
-- back from the unsettled days; macros/incremental.sql) and adds the new ones.

{% set window = var('label_window_days') %}

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='as_of_date',
    on_schema_change='fail',
    pre_hook="{{ drop_unsettled_rows(reads_days_after=2 * var('label_window_days'), sampled=true) }}",
) }}

with

features as (

    select
        as_of_date,
        customer_id,
        is_subscriber,
        is_active_subscriber,
        is_gift

    from {{ ref('customer_features') }}
    {{ after_kept() }}

),

points as (

    select * from {{ ref('int_features_as_of_dates') }}
    {{ after_kept() }}

),

daily as (

    -- Only days with an outcome: the others add nothing to the sums below. At 1M subscribers
    -- 1.6M of 42.7M rows, and the window join below made 176M rows out of all of them (34 s).
    select * from {{ ref('int_features_daily') }}
    where (cancellations > 0 or skips > 0 or add_ons > 0 or upgrades > 0)
    {%- if is_incremental() %}
      and activity_date >= (select min(as_of_date) from points)
    {%- endif %}

),

-- stg_raw__email_events is read where it is used: as one import CTE read twice, DuckDB
-- copied all of it (41M rows at 1M subscribers) on every run.

outcomes as (

    select
        points.as_of_date,
        daily.customer_id,
        sum(daily.cancellations) as cancellations,
        sum(daily.skips) as skips,
        sum(daily.add_ons) + sum(daily.upgrades) as add_ons_or_upgrades

    from points
    inner join daily
        on daily.activity_date >= points.as_of_date
        and daily.activity_date < cast({{ dbt.dateadd('day', window, 'points.as_of_date') }} as date)
    -- only the rows customer_features has: weekly points for the training customers
    -- (at 1M subscribers, 4x fewer rows to group than for everyone)
    where points.is_scoring_point
       or daily.customer_id in (select customer_id from {{ ref('int_training_customers') }})
    group by points.as_of_date, daily.customer_id

),

discount_sends as (

    select customer_id, message_id, occurred_at as sent_at
    from {{ ref('stg_raw__email_events') }}
    where occurred_at < {{ as_of_end() }}
      and event_type = 'sent'
      and ({{ is_discount_campaign('campaign_id') }})
      {%- if is_incremental() %}
      and occurred_at >= (select min(as_of_at) from points)
      {%- endif %}

),

conversions as (

    -- of the discount messages above only
    select message_id, min(occurred_at) as converted_at
    from {{ ref('stg_raw__email_events') }}
    where occurred_at < {{ as_of_end() }}
      and event_type = 'conversion'
      and message_id in (select message_id from discount_sends)
    group by message_id

),

discount_outcomes as (

    -- discount messages sent in the window, converted within the window after each send
    select
        points.as_of_date,
        discount_sends.customer_id,
        count(*) as discount_messages,
        max(case when conversions.converted_at
                      < {{ dbt.dateadd('day', window, 'discount_sends.sent_at') }}
                 then 1 else 0 end) as converted,
        max(discount_sends.sent_at) as last_sent_at

    from points
    inner join discount_sends
        on discount_sends.sent_at >= points.as_of_at
        and discount_sends.sent_at < {{ dbt.dateadd('day', window, 'points.as_of_at') }}
    left join conversions
        on discount_sends.message_id = conversions.message_id
    group by points.as_of_date, discount_sends.customer_id

),

joined as (

    select
        features.as_of_date,
        features.customer_id,
        -- the window ends by the end of the as_of day (the data we have)
        {{ dbt.dateadd('day', window, 'features.as_of_date') }} <= {{ as_of_end() }} as is_window_complete,
        features.is_subscriber and not features.is_gift as can_churn,
        features.is_active_subscriber as can_skip_or_expand,
        coalesce(outcomes.cancellations, 0) > 0 as has_cancelled,
        coalesce(outcomes.skips, 0) > 0 as has_skipped,
        coalesce(outcomes.add_ons_or_upgrades, 0) > 0 as has_added_or_upgraded,
        coalesce(discount_outcomes.discount_messages, 0) > 0 as received_discount_message,
        -- a send late in the window needs its own window to convert in
        discount_outcomes.last_sent_at is not null
            and {{ dbt.dateadd('day', window, 'discount_outcomes.last_sent_at') }} <= {{ as_of_end() }}
            as is_discount_window_complete,
        discount_outcomes.converted = 1 as has_converted_on_discount

    from features
    left join outcomes
        on features.as_of_date = outcomes.as_of_date
        and features.customer_id = outcomes.customer_id
    left join discount_outcomes
        on features.as_of_date = discount_outcomes.as_of_date
        and features.customer_id = discount_outcomes.customer_id

),

final as (

    select
        as_of_date,
        customer_id,
        is_window_complete,
        case when is_window_complete and can_churn then has_cancelled end as churned,
        case when is_window_complete and can_skip_or_expand then has_skipped end as skipped_next_order,
        case when is_window_complete and can_skip_or_expand then has_added_or_upgraded end
            as upgraded_or_added_item,
        case when is_window_complete then received_discount_message end as received_discount_message,
        case when received_discount_message and is_discount_window_complete
             then has_converted_on_discount end as converted_on_discount

    from joined

)

select * from final
