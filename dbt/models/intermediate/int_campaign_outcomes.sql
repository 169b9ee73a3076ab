-- One row per campaign assignment (treated, randomized holdout or global holdout) with what
-- happened in the playbook's goal window after assignment: the email funnel for this
-- campaign, whether the customer reached the playbook's goal, and what they spent.
-- Every arm is measured the same way from assigned_at (intention to treat), so the arms
-- compare like with like. Nothing after the as_of day is counted.
-- Incremental: a daily run recomputes the assignments whose outcome may still change -
-- goal window not over before the first day that may have changed (var
-- incremental_lookback_days; macros/incremental.sql), or an email of the campaign to the
-- customer since then (the funnel has no window) - and adds the new ones.

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='assignment_id',
    on_schema_change='fail',
    pre_hook="{{ drop_rows_after_as_of('assigned_at') }}",
) }}

{#-
    Each playbook's goal and the days after assignment it may happen in. Goal kinds:
      retained         no subscription cancelled (an upgrade is not a loss)
      cadence_changed  changed their delivery cadence in the portal
      addon            ordered a one-time add-on
      login            logged in to the portal
      reactivated      started a subscription again
      ordered          placed a fulfilled order (also the goal of playbooks not listed)
    Override with var campaign_goals: {playbook_id: {goal: <kind>, window_days: N}}; the Dagster
    jobs pass the briefs' goals (dagster_project/models/goals.py), the same as these for the shipped ones.
-#}
{%- set goals = var('campaign_goals', {
    'at_risk_save': {'goal': 'retained', 'window_days': 60},
    'cadence_mismatch': {'goal': 'cadence_changed', 'window_days': 30},
    'expansion': {'goal': 'addon', 'window_days': 30},
    'onboarding': {'goal': 'retained', 'window_days': 60},
    're_engagement': {'goal': 'login', 'window_days': 30},
    'win_back': {'goal': 'reactivated', 'window_days': 60},
    'high_ltv_recovery': {'goal': 'retained', 'window_days': 60},
    'save_offer': {'goal': 'retained', 'window_days': 30},
}) -%}
{%- set default_goal = var('campaign_default_goal', {'goal': 'ordered', 'window_days': 30}) -%}

{#- A warehouse that never ran a campaign has no nextbest.assignments yet: read no rows then. -#}
{%- set assignments_source = source('nextbest', 'assignments') -%}
{%- set assignments_exist = execute and adapter.get_relation(
        database=assignments_source.database,
        schema=assignments_source.schema,
        identifier=assignments_source.identifier) is not none %}

with

{% if assignments_exist %}
assignments_source as (

    select * from {{ assignments_source }}

),
{% else %}
assignments_source as (

    select
        cast(null as {{ dbt.type_string() }}) as assignment_id,
        cast(null as {{ dbt.type_string() }}) as campaign_id,
        cast(null as {{ dbt.type_string() }}) as playbook_id,
        cast(null as {{ dbt.type_string() }}) as customer_id,
        cast(null as {{ dbt.type_timestamp() }}) as assigned_at,
        cast(null as {{ dbt.type_string() }}) as arm,
        cast(null as {{ dbt.type_string() }}) as message_id
    from (select 1 as no_rows) as empty_table
    where 1 = 0

),
{% endif %}

-- The staged sources are read where they are used, not through import CTEs: DuckDB
-- materializes a CTE read more than once with every column, which at 1M subscribers
-- copied 41M email events on every run.

goals as (

    {% for playbook_id, goal in goals.items() %}
    select
        cast('{{ playbook_id }}' as {{ dbt.type_string() }}) as playbook_id,
        cast('{{ goal["goal"] }}' as {{ dbt.type_string() }}) as goal_kind,
        cast({{ goal["window_days"] | int }} as {{ dbt.type_int() }}) as goal_window_days
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

assignments as (

    select
        cast(a.assignment_id as {{ dbt.type_string() }}) as assignment_id,
        cast(a.campaign_id as {{ dbt.type_string() }}) as campaign_id,
        cast(a.playbook_id as {{ dbt.type_string() }}) as playbook_id,
        cast(a.customer_id as {{ dbt.type_string() }}) as customer_id,
        lower(trim(a.arm)) as arm,
        cast(a.assigned_at as {{ dbt.type_timestamp() }}) as assigned_at,
        coalesce(g.goal_kind, '{{ default_goal["goal"] }}') as goal_kind,
        coalesce(g.goal_window_days, {{ default_goal["window_days"] | int }}) as goal_window_days

    from assignments_source as a
    left join goals as g
        on a.playbook_id = g.playbook_id
    where a.assignment_id is not null
      and a.assigned_at < {{ as_of_end() }}

),

{% if is_incremental() %}
{%- set unsettled_from -%}
    cast({{ incremental_start('cast(assigned_at as date)') }} as {{ dbt.type_timestamp() }})
{%- endset %}
recent_funnel as (

    -- campaigns with an email to the customer on a day that may have changed
    select distinct campaign_id, customer_id
    from {{ ref('stg_raw__email_events') }}
    where occurred_at >= {{ unsettled_from }}

),
{% endif %}

windows as (

    select
        assignments.*,
        {{ dbt.dateadd('day', 'goal_window_days', 'assigned_at') }} as window_ends_at

    from assignments
    {%- if is_incremental() %}
    where {{ dbt.dateadd('day', 'goal_window_days', 'assigned_at') }} >= {{ unsettled_from }}
       or exists (
           select 1 from recent_funnel
           where recent_funnel.campaign_id = assignments.campaign_id
             and recent_funnel.customer_id = assignments.customer_id
       )
    {%- endif %}

),

{% if is_incremental() %}
first_window as (

    select min(assigned_at) as assigned_at from windows

),
{%- endif %}

-- What each goal kind looks for, as (customer, what, when). For `retained` the event is the
-- loss (a cancellation): the goal is reached when none happens in the window.
every_goal_event as (

    select customer_id, 'retained' as goal_kind, cancelled_at as occurred_at
    from {{ ref('stg_raw__subscriptions') }}
    where cancelled_at is not null
      and coalesce(cancel_reason, '') <> 'upgraded'

    union all

    select customer_id, 'cadence_changed' as goal_kind, occurred_at
    from {{ ref('stg_raw__portal_events') }}
    where event_type = 'change_cadence'

    union all

    select customer_id, 'login' as goal_kind, occurred_at
    from {{ ref('stg_raw__portal_events') }}
    where event_type = 'login'

    union all

    select orders.customer_id, 'addon' as goal_kind, orders.ordered_at as occurred_at
    from {{ ref('stg_raw__orders') }} as orders
    inner join {{ ref('stg_raw__order_items') }} as order_items
        on orders.order_id = order_items.order_id
    where order_items.is_one_time
      and orders.order_status in ('fulfilled', 'refunded')

    union all

    select customer_id, 'reactivated' as goal_kind, started_at as occurred_at
    from {{ ref('stg_raw__subscriptions') }}

    union all

    select customer_id, 'ordered' as goal_kind, ordered_at as occurred_at
    from {{ ref('stg_raw__orders') }}
    where order_status = 'fulfilled'

),

goal_events as (

    select * from every_goal_event
    {%- if is_incremental() %}
    -- only the events the recomputed windows can see
    where occurred_at >= (select assigned_at from first_window)
    {%- endif %}

),

goal_hits as (

    select
        windows.assignment_id,
        count(*) as goal_events

    from windows
    inner join goal_events
        on windows.customer_id = goal_events.customer_id
        and windows.goal_kind = goal_events.goal_kind
        and goal_events.occurred_at >= windows.assigned_at
        and goal_events.occurred_at < windows.window_ends_at
        and goal_events.occurred_at < {{ as_of_end() }}
    group by windows.assignment_id

),

revenue as (

    select
        windows.assignment_id,
        sum(orders.order_total) as revenue

    from windows
    inner join {{ ref('stg_raw__orders') }} as orders
        on windows.customer_id = orders.customer_id
        and orders.ordered_at >= windows.assigned_at
        and orders.ordered_at < windows.window_ends_at
        and orders.ordered_at < {{ as_of_end() }}
    where orders.order_status = 'fulfilled'
    group by windows.assignment_id

),

-- The email funnel of this campaign's message (holdouts normally have none).
funnel as (

    select
        windows.assignment_id,
        max(case when email_events.event_type = 'sent' then 1 else 0 end) as was_sent,
        max(case when email_events.event_type = 'delivered' then 1 else 0 end) as was_delivered,
        max(case when email_events.event_type = 'open' then 1 else 0 end) as opened,
        max(case when email_events.event_type = 'click' then 1 else 0 end) as clicked,
        max(case when email_events.event_type = 'conversion' then 1 else 0 end) as esp_converted

    from windows
    inner join {{ ref('stg_raw__email_events') }} as email_events
        on windows.campaign_id = email_events.campaign_id
        and windows.customer_id = email_events.customer_id
    where email_events.occurred_at < {{ as_of_end() }}
    group by windows.assignment_id

),

final as (

    select
        windows.assignment_id,
        windows.campaign_id,
        windows.playbook_id,
        windows.customer_id,
        windows.arm,
        windows.assigned_at,
        {{ dbt.concat(['windows.goal_kind', "'_'",
                       'cast(windows.goal_window_days as ' ~ dbt.type_string() ~ ')', "'d'"]) }} as goal,
        windows.goal_kind,
        windows.goal_window_days,
        windows.window_ends_at,
        windows.window_ends_at <= {{ as_of_end() }} as window_complete,
        cast(coalesce(funnel.was_sent, 0) as {{ dbt.type_int() }}) as was_sent,
        cast(coalesce(funnel.was_delivered, 0) as {{ dbt.type_int() }}) as was_delivered,
        cast(coalesce(funnel.opened, 0) as {{ dbt.type_int() }}) as opened,
        cast(coalesce(funnel.clicked, 0) as {{ dbt.type_int() }}) as clicked,
        cast(coalesce(funnel.esp_converted, 0) as {{ dbt.type_int() }}) as esp_converted,
        cast(
            case
                when windows.goal_kind = 'retained' then
                    case when goal_hits.goal_events is null then 1 else 0 end
                else
                    case when goal_hits.goal_events is not null then 1 else 0 end
            end as {{ dbt.type_int() }}
        ) as converted,
        cast(coalesce(revenue.revenue, 0) as {{ type_money() }}) as revenue

    from windows
    left join goal_hits
        on windows.assignment_id = goal_hits.assignment_id
    left join revenue
        on windows.assignment_id = revenue.assignment_id
    left join funnel
        on windows.assignment_id = funnel.assignment_id

)

select * from final
