-- Did the campaign work? One row per campaign (batch) and control group: the treated
-- customers against the randomized holdout, and against the global holdout where the
-- campaign has one. Funnel counts, goal conversions and revenue per arm, and the lift of
-- treated over control with 95% confidence intervals by the normal approximation: for the
-- difference of proportions the Agresti-Caffo interval (Wald after adding one conversion and
-- one non-conversion to each arm, which keeps 95% coverage for holdouts of a few dozen), the
-- delta method on the log ratio for relative lift, Welch for revenue per customer.
-- These outcomes are what the next uplift training learns from.

{#- Two-sided 95% normal quantile. -#}
{%- set z = 1.959963984540054 %}

with

outcomes as (

    select * from {{ ref('int_campaign_outcomes') }}

),

campaigns as (

    select
        playbook_id,
        campaign_id,
        min(goal) as goal,
        max(goal_window_days) as goal_window_days,
        min(assigned_at) as campaign_started_at,
        -- complete once every assignment's goal window has ended by the as_of day
        min(case when window_complete then 1 else 0 end) = 1 as window_complete

    from outcomes
    group by playbook_id, campaign_id

),

arms as (

    select
        playbook_id,
        campaign_id,
        arm,
        count(*) as customers,
        sum(was_sent) as sends,
        sum(was_delivered) as delivered,
        sum(opened) as opens,
        sum(clicked) as clicks,
        sum(esp_converted) as esp_conversions,
        sum(converted) as conversions,
        sum(revenue) as revenue,
        avg(cast(revenue as double)) as revenue_per_customer,
        -- cast: Snowflake and DuckDB both have double (an 8-byte float)
        var_samp(cast(revenue as double)) as revenue_variance

    from outcomes
    group by playbook_id, campaign_id, arm

),

-- The randomized holdout is always a comparison (empty if the campaign held nobody out);
-- the global holdout only where the campaign's assignments have that arm.
comparisons as (

    select playbook_id, campaign_id, 'holdout' as control_arm
    from campaigns

    union all

    select playbook_id, campaign_id, 'global_holdout' as control_arm
    from arms
    where arm = 'global_holdout'

),

paired as (

    select
        comparisons.playbook_id,
        comparisons.campaign_id,
        comparisons.control_arm,
        campaigns.goal,
        campaigns.goal_window_days,
        campaigns.campaign_started_at,
        campaigns.window_complete,

        coalesce(treated.customers, 0) as treated_customers,
        coalesce(treated.sends, 0) as treated_sends,
        coalesce(treated.delivered, 0) as treated_delivered,
        coalesce(treated.opens, 0) as treated_opens,
        coalesce(treated.clicks, 0) as treated_clicks,
        coalesce(treated.esp_conversions, 0) as treated_esp_conversions,
        coalesce(treated.conversions, 0) as treated_conversions,
        coalesce(treated.revenue, 0) as treated_revenue,
        treated.revenue_per_customer as treated_revenue_per_customer,
        coalesce(treated.revenue_variance, 0) as treated_revenue_variance,

        coalesce(control.customers, 0) as control_customers,
        coalesce(control.sends, 0) as control_sends,
        coalesce(control.delivered, 0) as control_delivered,
        coalesce(control.opens, 0) as control_opens,
        coalesce(control.clicks, 0) as control_clicks,
        coalesce(control.esp_conversions, 0) as control_esp_conversions,
        coalesce(control.conversions, 0) as control_conversions,
        coalesce(control.revenue, 0) as control_revenue,
        control.revenue_per_customer as control_revenue_per_customer,
        coalesce(control.revenue_variance, 0) as control_revenue_variance

    from comparisons
    inner join campaigns
        on comparisons.playbook_id = campaigns.playbook_id
        and comparisons.campaign_id = campaigns.campaign_id
    left join arms as treated
        on comparisons.playbook_id = treated.playbook_id
        and comparisons.campaign_id = treated.campaign_id
        and treated.arm = 'treatment'
    left join arms as control
        on comparisons.playbook_id = control.playbook_id
        and comparisons.campaign_id = control.campaign_id
        and control.arm = comparisons.control_arm

),

rates as (

    select
        paired.*,
        cast(treated_conversions as double) / nullif(treated_customers, 0) as treated_conversion_rate,
        cast(control_conversions as double) / nullif(control_customers, 0) as control_conversion_rate,
        -- Agresti-Caffo: one conversion and one non-conversion added per arm, for the intervals only
        cast(treated_conversions + 1 as double) / (treated_customers + 2) as treated_adjusted_rate,
        case when control_customers > 0
            then cast(control_conversions + 1 as double) / (control_customers + 2) end as control_adjusted_rate

    from paired

),

errors as (

    select
        rates.*,
        treated_conversion_rate - control_conversion_rate as conversion_lift,
        treated_adjusted_rate - control_adjusted_rate as adjusted_lift,
        sqrt(
            treated_adjusted_rate * (1 - treated_adjusted_rate) / (treated_customers + 2)
            + control_adjusted_rate * (1 - control_adjusted_rate) / (control_customers + 2)
        ) as adjusted_lift_se,
        -- log of the (adjusted) rate ratio and its standard error; adjusted rates are never 0
        ln(treated_adjusted_rate / control_adjusted_rate) as log_rate_ratio,
        sqrt(
            (1 - treated_adjusted_rate) / ((treated_customers + 2) * treated_adjusted_rate)
            + (1 - control_adjusted_rate) / ((control_customers + 2) * control_adjusted_rate)
        ) as log_rate_ratio_se,
        treated_revenue_per_customer - control_revenue_per_customer as revenue_lift_per_customer,
        sqrt(
            treated_revenue_variance / nullif(treated_customers, 0)
            + control_revenue_variance / nullif(control_customers, 0)
        ) as revenue_lift_se,
        case when treated_revenue_per_customer > 0 and control_revenue_per_customer > 0
            then ln(treated_revenue_per_customer / control_revenue_per_customer) end as log_revenue_ratio,
        case when treated_revenue_per_customer > 0 and control_revenue_per_customer > 0
            then sqrt(
                treated_revenue_variance
                    / (treated_customers * treated_revenue_per_customer * treated_revenue_per_customer)
                + control_revenue_variance
                    / (control_customers * control_revenue_per_customer * control_revenue_per_customer)
            ) end as log_revenue_ratio_se

    from rates

),

final as (

    select
        cast(playbook_id as {{ dbt.type_string() }}) as playbook_id,
        cast(campaign_id as {{ dbt.type_string() }}) as campaign_id,
        cast(control_arm as {{ dbt.type_string() }}) as control_arm,
        cast(goal as {{ dbt.type_string() }}) as goal,
        cast(goal_window_days as {{ dbt.type_int() }}) as goal_window_days,
        cast(campaign_started_at as {{ dbt.type_timestamp() }}) as campaign_started_at,
        window_complete,

        cast(treated_customers as {{ dbt.type_int() }}) as treated_customers,
        cast(treated_sends as {{ dbt.type_int() }}) as treated_sends,
        cast(treated_delivered as {{ dbt.type_int() }}) as treated_delivered,
        cast(treated_opens as {{ dbt.type_int() }}) as treated_opens,
        cast(treated_clicks as {{ dbt.type_int() }}) as treated_clicks,
        cast(treated_esp_conversions as {{ dbt.type_int() }}) as treated_esp_conversions,
        cast(treated_conversions as {{ dbt.type_int() }}) as treated_conversions,
        cast(treated_revenue as {{ type_money() }}) as treated_revenue,

        cast(control_customers as {{ dbt.type_int() }}) as control_customers,
        cast(control_sends as {{ dbt.type_int() }}) as control_sends,
        cast(control_delivered as {{ dbt.type_int() }}) as control_delivered,
        cast(control_opens as {{ dbt.type_int() }}) as control_opens,
        cast(control_clicks as {{ dbt.type_int() }}) as control_clicks,
        cast(control_esp_conversions as {{ dbt.type_int() }}) as control_esp_conversions,
        cast(control_conversions as {{ dbt.type_int() }}) as control_conversions,
        cast(control_revenue as {{ type_money() }}) as control_revenue,

        cast(treated_conversion_rate as double) as treated_conversion_rate,
        cast(control_conversion_rate as double) as control_conversion_rate,
        cast(conversion_lift as double) as conversion_lift,
        cast(adjusted_lift - {{ z }} * adjusted_lift_se as double) as conversion_lift_ci_low,
        cast(adjusted_lift + {{ z }} * adjusted_lift_se as double) as conversion_lift_ci_high,
        cast(treated_conversion_rate / nullif(control_conversion_rate, 0) - 1 as double)
            as conversion_relative_lift,
        cast(exp(log_rate_ratio - {{ z }} * log_rate_ratio_se) - 1 as double) as conversion_relative_lift_ci_low,
        cast(exp(log_rate_ratio + {{ z }} * log_rate_ratio_se) - 1 as double) as conversion_relative_lift_ci_high,
        coalesce(
            adjusted_lift - {{ z }} * adjusted_lift_se > 0
            or adjusted_lift + {{ z }} * adjusted_lift_se < 0,
            false
        ) as is_significant,

        cast(treated_revenue_per_customer as double) as treated_revenue_per_customer,
        cast(control_revenue_per_customer as double) as control_revenue_per_customer,
        cast(revenue_lift_per_customer as double) as revenue_lift_per_customer,
        cast(revenue_lift_per_customer - {{ z }} * revenue_lift_se as double) as revenue_lift_ci_low,
        cast(revenue_lift_per_customer + {{ z }} * revenue_lift_se as double) as revenue_lift_ci_high,
        cast(treated_revenue_per_customer / nullif(control_revenue_per_customer, 0) - 1 as double)
            as revenue_relative_lift,
        cast(exp(log_revenue_ratio - {{ z }} * log_revenue_ratio_se) - 1 as double) as revenue_relative_lift_ci_low,
        cast(exp(log_revenue_ratio + {{ z }} * log_revenue_ratio_se) - 1 as double) as revenue_relative_lift_ci_high,

        {{ as_of_date() }} as as_of_date

    from errors

)

select * from final
