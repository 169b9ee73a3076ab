-- Per point in time and customer with events before it: counters from
-- int_features_daily summed over the last 4 / 13 weeks and lifetime, and the latest
-- day of some kinds of event, using only days before as_of_date. Weekly points are
-- for the customers of int_training_customers, the scoring point for everyone.
-- A full build sums weekly buckets with window frames for the weekly points (fast: no
-- join of every day to every point). The scoring point, any weekday, and on an
-- incremental run the points new since the last run sum the days directly: lifetime
-- counters once per customer up to the first new point, plus per point the days after
-- it and those in the windows. Both see exactly the 28 / 91 / 119 days before as_of_date.
-- Counts are integers; spend is a float (a feature, not bookkeeping).

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='as_of_date',
    on_schema_change='fail',
    pre_hook="{{ drop_unsettled_rows(sampled=true) }}",
) }}

{#- (feature, daily counter, weeks back; none = lifetime) -#}
{%- set sums = [
    ('orders_lifetime', 'orders_charged', none),
    ('orders_4w', 'orders_charged', 4),
    ('orders_13w', 'orders_charged', 13),
    ('spend_lifetime', 'spend', none),
    ('spend_13w', 'spend', 13),
    ('skips_lifetime', 'skips', none),
    ('skips_4w', 'skips', 4),
    ('skips_13w', 'skips', 13),
    ('failed_orders_13w', 'orders_failed', 13),
    ('discounted_orders_lifetime', 'discounted_orders', none),
    ('one_time_orders_lifetime', 'one_time_orders', none),
    ('add_ons_lifetime', 'add_ons', none),
    ('add_ons_4w', 'add_ons', 4),
    ('add_ons_13w', 'add_ons', 13),
    ('emails_sent_4w', 'emails_sent', 4),
    ('emails_sent_13w', 'emails_sent', 13),
    ('opens_4w', 'opens', 4),
    ('opens_13w', 'opens', 13),
    ('clicks_4w', 'clicks', 4),
    ('clicks_13w', 'clicks', 13),
    ('conversions_lifetime', 'conversions', none),
    ('playbook_sends_13w', 'playbook_sends', 13),
    ('discount_sends_lifetime', 'discount_sends', none),
    ('discount_conversions_lifetime', 'discount_conversions', none),
    ('opt_outs_lifetime', 'opt_outs', none),
    ('bounces_lifetime', 'bounces', none),
    ('logins_4w', 'logins', 4),
    ('logins_13w', 'logins', 13),
    ('portal_actions_4w', 'portal_actions', 4),
    ('cancel_attempts_4w', 'cancel_attempts', 4),
    ('cancel_attempts_13w', 'cancel_attempts', 13),
    ('cancel_attempts_lifetime', 'cancel_attempts', none),
    ('pauses_13w', 'pauses', 13),
    ('reschedules_13w', 'reschedules', 13),
    ('product_swaps_13w', 'product_swaps', 13),
    ('cadence_changes_lifetime', 'cadence_changes', none),
    ('reactivations_lifetime', 'reactivations', none),
    ('payment_updates_13w', 'payment_updates', 13),
    ('engagement_4w', 'engagement', 4),
    ('engagement_17w', 'engagement', 17),
    ('tickets_lifetime', 'tickets_opened', none),
    ('tickets_13w', 'tickets_opened', 13),
    ('tickets_resolved_lifetime', 'tickets_resolved', none),
    ('cancel_request_tickets_13w', 'cancel_request_tickets', 13),
    ('delivery_tickets_13w', 'delivery_tickets', 13),
    ('csat_ratings_lifetime', 'csat_ratings', none),
    ('csat_points_lifetime', 'csat_points', none),
    ('payment_failures_13w', 'payment_failures', 13),
    ('cancellations_lifetime', 'cancellations', none),
    ('upgrades_lifetime', 'upgrades', none),
] -%}
{#- (feature, daily counter): the latest day the counter was above zero -#}
{%- set latest = [
    ('last_order_date', 'orders_charged'),
    ('last_add_on_date', 'add_ons'),
    ('last_skip_date', 'skips'),
    ('last_playbook_send_date', 'playbook_sends'),
    ('last_engagement_date', 'any_engagement'),
    ('last_cancellation_date', 'cancellations'),
] -%}
{%- set counters = (sums | map(attribute=1) | list + latest | map(attribute=1) | list) | unique | list %}
{%- set max_weeks = sums | map(attribute=2) | reject('none') | max %}

with

points as (

    select * from {{ ref('int_features_as_of_dates') }}
    {{ after_kept() }}

),

training_customers as (

    select customer_id from {{ ref('int_training_customers') }}

),

daily as (

    select
        *,
        opens + clicks + logins as engagement,
        opens + clicks + logins + portal_actions as any_engagement

    from {{ ref('int_features_daily') }}

),

{% if not is_incremental() %}
weekly_buckets as (

    -- a day's events are first visible at the Monday after its week
    select
        daily.customer_id,
        cast({{ dbt.dateadd('day', 7, dbt.date_trunc('week', 'daily.activity_date')) }} as date) as as_of_date,
        {%- for counter in counters %}
        sum(daily.{{ counter }}) as {{ counter }},
        {%- endfor %}
        {%- for name, counter in latest %}
        max(case when daily.{{ counter }} > 0 then daily.activity_date end) as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from daily
    inner join training_customers
        on daily.customer_id = training_customers.customer_id
    group by 1, 2

),

first_seen as (

    select customer_id, min(as_of_date) as first_point
    from weekly_buckets
    group by customer_id

),

weekly_grid as (

    -- every weekly point from the customer's first with events before it, no gaps,
    -- so a frame of N rows is N weeks
    select
        points.as_of_date,
        first_seen.customer_id

    from first_seen
    inner join points
        on points.as_of_date >= first_seen.first_point
    where not points.is_scoring_point

),

weekly_dense as (

    select
        weekly_grid.as_of_date,
        weekly_grid.customer_id,
        {%- for counter in counters %}
        coalesce(weekly_buckets.{{ counter }}, 0) as {{ counter }},
        {%- endfor %}
        {%- for name, counter in latest %}
        weekly_buckets.{{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from weekly_grid
    left join weekly_buckets
        on weekly_grid.customer_id = weekly_buckets.customer_id
        and weekly_grid.as_of_date = weekly_buckets.as_of_date

),

weekly_points as (

    select
        as_of_date,
        customer_id,
        {%- for name, counter, weeks in sums %}
        cast(sum({{ counter }}) over (
            partition by customer_id order by as_of_date
            rows between {{ 'unbounded' if weeks is none else weeks - 1 }} preceding and current row
        ) as {{ dbt.type_float() if counter == 'spend' else dbt.type_int() }}) as {{ name }},
        {%- endfor %}
        {%- for name, counter in latest %}
        max({{ name }}) over (
            partition by customer_id order by as_of_date
            rows between unbounded preceding and current row
        ) as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from weekly_dense

),
{% endif %}

new_points as (

    -- the points summed over days: the scoring point (everyone) and, on an incremental
    -- run, the new weekly points (the training customers)
    select as_of_date, is_scoring_point
    from points
    {%- if not is_incremental() %}
    where is_scoring_point
    {%- endif %}

),

first_new_point as (

    select min(as_of_date) as as_of_date from new_points

),

before_new_points as (

    -- lifetime counters and latest days before the first new point, once per customer
    select
        daily.customer_id,
        {%- for name, counter, weeks in sums if weeks is none %}
        sum(daily.{{ counter }}) as {{ name }},
        {%- endfor %}
        {%- for name, counter in latest %}
        max(case when daily.{{ counter }} > 0 then daily.activity_date end) as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from daily
    where daily.activity_date < (select as_of_date from first_new_point)
    group by daily.customer_id

),

since_first_new_point as (

    -- per new point, its windows, and the lifetime counters and latest days from the
    -- first new point up to it: only days since then or in the longest window are read
    select
        new_points.as_of_date,
        daily.customer_id,
        {%- for name, counter, weeks in sums %}
        {%- if weeks is none %}
        sum(case when daily.activity_date >= first_new_point.as_of_date
                 then daily.{{ counter }} else 0 end) as {{ name }},
        {%- else %}
        sum(case when {{ in_last_days('daily.activity_date', weeks * 7, 'new_points.as_of_date') }}
                 then daily.{{ counter }} else 0 end) as {{ name }},
        {%- endif %}
        {%- endfor %}
        {%- for name, counter in latest %}
        max(case when daily.{{ counter }} > 0 and daily.activity_date >= first_new_point.as_of_date
                 then daily.activity_date end) as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from new_points
    cross join first_new_point
    inner join daily
        on daily.activity_date < new_points.as_of_date
        and (daily.activity_date >= first_new_point.as_of_date
             or {{ in_last_days('daily.activity_date', max_weeks * 7, 'new_points.as_of_date') }})
    group by new_points.as_of_date, daily.customer_id

),

new_grid as (

    -- who has events before each new point: before the first one, or since
    select new_points.as_of_date, before_new_points.customer_id
    from new_points
    cross join before_new_points

    union

    select as_of_date, customer_id
    from since_first_new_point

),

daily_points as (

    select
        new_grid.as_of_date,
        new_grid.customer_id,
        {%- for name, counter, weeks in sums %}
        cast(
            {%- if weeks is none %}
            coalesce(before_new_points.{{ name }}, 0) + coalesce(since_first_new_point.{{ name }}, 0)
            {%- else %}
            coalesce(since_first_new_point.{{ name }}, 0)
            {%- endif %}
            as {{ dbt.type_float() if counter == 'spend' else dbt.type_int() }}) as {{ name }},
        {%- endfor %}
        {%- for name, counter in latest %}
        coalesce(since_first_new_point.{{ name }}, before_new_points.{{ name }}) as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from new_grid
    inner join new_points
        on new_grid.as_of_date = new_points.as_of_date
    left join before_new_points
        on new_grid.customer_id = before_new_points.customer_id
    left join since_first_new_point
        on new_grid.as_of_date = since_first_new_point.as_of_date
        and new_grid.customer_id = since_first_new_point.customer_id
    where new_points.is_scoring_point
       or new_grid.customer_id in (select customer_id from training_customers)

),

final as (

    {%- if not is_incremental() %}
    select * from weekly_points
    union all
    {%- endif %}
    select * from daily_points

)

select * from final
