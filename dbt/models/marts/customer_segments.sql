-- One row per (customer, segment) the customer is in as of the as_of day, with the
-- reason in plain words. Segments are behaviour rules over customer_context plus,
-- where the propensity models have scored the customer (nextbest.customer_scores),
-- score filters: at_risk also takes customers the churn model expects to cancel,
-- cadence_mismatch keeps skippers the skip model expects to skip again, expansion also
-- takes repeat buyers the upgrade model expects to add or upgrade. Without scores
-- (none written yet, or a null score) the behaviour rules decide alone. Thresholds are
-- dbt vars (dbt_project.yml says what each means).

{{ check_threshold_vars() }}
{{ require_context_at_as_of() }}
{% set as_text = 'as ' ~ dbt.type_string() %}

with

customers as (

    select * from {{ ref('customer_context') }}

),

scores as (

    select * from {{ customer_scores() }}

),

rules as (

    select
        customers.*,
        scores.p_churn,
        scores.p_skip,
        scores.p_upgrade,
        subscription_status = 'active' as is_active_subscriber,
        engagement_prior_90d >= {{ var('at_risk_min_prior_engagement') }}
            and engagement_trend_ratio <= {{ var('at_risk_engagement_drop_ratio') }}
            as has_engagement_drop,
        recent_cancel_attempts > 0 as has_cancel_attempt,
        consecutive_skips >= {{ var('at_risk_consecutive_skips') }} as has_skip_streak,
        coalesce(scores.p_churn >= {{ var('at_risk_min_p_churn') }}, false) as has_churn_score,
        -- no skip score = no filter
        coalesce(scores.p_skip >= {{ var('cadence_mismatch_min_p_skip') }}, true) as expects_more_skips,
        coalesce(scores.p_upgrade >= {{ var('expansion_min_p_upgrade') }}, false)
            and lifetime_fulfilled_orders >= {{ var('expansion_min_orders') }} as has_upgrade_score

    from customers
    left join scores
        on customers.customer_id = scores.customer_id

),

at_risk as (

    select
        customer_id,
        'at_risk' as segment,
        case
            when has_cancel_attempt then {{ dbt.concat([
                "'Tried to cancel in the portal in the last '",
                "cast(" ~ var('at_risk_cancel_attempt_days') ~ " " ~ as_text ~ ")",
                "' days'"]) }}
            when has_skip_streak then {{ dbt.concat([
                "'Skipped the last '", "cast(consecutive_skips " ~ as_text ~ ")",
                "' deliveries in a row'"]) }}
            when has_engagement_drop then {{ dbt.concat([
                "'Opens, clicks and logins fell to '",
                "cast(engagement_last_30d " ~ as_text ~ ")",
                "' in the last 30 days from '",
                "cast(engagement_prior_90d " ~ as_text ~ ")",
                "' in the 90 days before'"]) }}
            else {{ dbt.concat([
                "'The churn model gives a '", "cast(cast(round(p_churn * 100) as integer) " ~ as_text ~ ")",
                "'% chance of cancelling in the next 30 days'"]) }}
        end as reason

    from rules
    where is_active_subscriber
      and (has_engagement_drop or has_cancel_attempt or has_skip_streak or has_churn_score)

),

cadence_mismatch as (

    select
        customer_id,
        'cadence_mismatch' as segment,
        {{ dbt.concat([
            "'Skipped '", "cast(recent_cycle_skips " ~ as_text ~ ")",
            "' of the last '", "cast(recent_cycles " ~ as_text ~ ")",
            "' deliveries on a '", "cast(cadence_days " ~ as_text ~ ")",
            "'-day cycle'"]) }} as reason

    from rules
    where is_active_subscriber
      and recent_cycles >= {{ var('cadence_mismatch_cycles') }}
      and recent_cycle_skips between {{ var('cadence_mismatch_min_skips') }}
                                 and {{ var('cadence_mismatch_max_skips') }}
      and expects_more_skips

),

expansion as (

    select
        customer_id,
        'expansion' as segment,
        case
            when {{ days_before_as_of('last_one_time_addon_date') }} < {{ var('expansion_window_days') }}
                then {{ dbt.concat([
                    "'Added a one-time item on '", "cast(last_one_time_addon_date " ~ as_text ~ ")"]) }}
            else {{ dbt.concat([
                "'The upgrade model gives a '", "cast(cast(round(p_upgrade * 100) as integer) " ~ as_text ~ ")",
                "'% chance of adding an item or upgrading in the next 30 days'"]) }}
        end as reason

    from rules
    where is_active_subscriber
      and (
          {{ days_before_as_of('last_one_time_addon_date') }} < {{ var('expansion_window_days') }}
          or has_upgrade_score
      )
      and customer_id not in (select customer_id from at_risk)

),

onboarding as (

    select
        customer_id,
        'onboarding' as segment,
        {{ dbt.concat([
            "'Joined '", "cast(tenure_days " ~ as_text ~ ")", "' days ago'"]) }} as reason

    from rules
    where tenure_days < {{ var('onboarding_days') }}

),

dormant as (

    select
        customer_id,
        'dormant' as segment,
        {{ dbt.concat([
            "'Subscription is '", "subscription_status",
            "' but no opens, clicks, portal visits or deliveries in '",
            "cast(days_since_last_activity " ~ as_text ~ ")", "' days'"]) }} as reason

    from rules
    where is_subscriber
      and days_since_last_activity >= {{ var('dormant_days') }}

),

win_back as (

    select
        customer_id,
        'win_back' as segment,
        {{ dbt.concat([
            "'Cancelled on '", "cast(cast(last_cancelled_at as date) " ~ as_text ~ ")",
            "' ('", "coalesce(last_cancel_reason, 'no reason given')",
            "') and has not resubscribed'"]) }} as reason

    from rules
    where not is_subscriber
      and last_cancelled_at is not null
      and {{ days_before_as_of('last_cancelled_at') }} < {{ var('win_back_window_days') }}

),

memberships as (

    select * from at_risk
    union all
    select * from cadence_mismatch
    union all
    select * from expansion
    union all
    select * from onboarding
    union all
    select * from dormant
    union all
    select * from win_back

),

final as (

    select
        cast(customer_id as {{ dbt.type_string() }}) as customer_id,
        cast(segment as {{ dbt.type_string() }}) as segment,
        cast(reason as {{ dbt.type_string() }}) as reason,
        {{ as_of_date() }} as as_of_date

    from memberships

)

select * from final
