-- Did the campaign work? One row per campaign (batch) and control group: the treated
-- customers against the randomized holdout, and against the global holdout where the
-- campaign has one. Funnel counts, goal conversions and revenue per arm, and the lift of
-- treated over control with 95% confidence intervals by the normal approximation: for the
-- difference of proportions the Agresti-Caffo interval (Wald after adding one conversion and
-- one non-conversion to each arm, which keeps 95% coverage for holdouts of a few dozen), the
-- delta method on the log ratio for relative lift, Welch for revenue per customer.
-- These outcomes are what the next uplift training learns from.

{#- Each arm's counts (integers) and what is summed from them. -#}
{%- set arms = ['treated', 'control'] %}
{%- set counts = ['customers', 'sends', 'delivered', 'opens', 'clicks', 'esp_conversions', 'conversions'] %}


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

        {%- for arm in arms %}
        {%- for count in counts + ['revenue'] %}
        coalesce({{ arm }}.{{ count }}, 0) as {{ arm }}_{{ count }},
        {%- endfor %}
        {{ arm }}.revenue_per_customer as {{ arm }}_revenue_per_customer,
        coalesce({{ arm }}.revenue_variance, 0) as {{ arm }}_revenue_variance{{ ',' if not loop.last }}
        {%- endfor %}

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

        {%- for arm in arms %}
        {%- for count in counts %}
        cast({{ arm }}_{{ count }} as {{ dbt.type_int() }}) as {{ arm }}_{{ count }},
        {%- endfor %}
        cast({{ arm }}_revenue as {{ type_money() }}) as {{ arm }}_revenue,
        {%- endfor %}

        cast(treated_conversion_rate as double) as treated_conversion_rate,
        cast(control_conversion_rate as double) as control_conversion_rate,
        cast(conversion_lift as double) as conversion_lift,
        {{ interval('conversion_lift', 'adjusted_lift', 'adjusted_lift_se') }},
        cast(treated_conversion_rate / nullif(control_conversion_rate, 0) - 1 as double)
            as conversion_relative_lift,
        {{ interval('conversion_relative_lift', 'log_rate_ratio', 'log_rate_ratio_se', ('exp(', ') - 1')) }},
        -- the interval of the difference excludes 0
        coalesce(
            adjusted_lift - {{ z_times('adjusted_lift_se') }} > 0
            or adjusted_lift + {{ z_times('adjusted_lift_se') }} < 0,
            false
        ) as is_significant,

        cast(treated_revenue_per_customer as double) as treated_revenue_per_customer,
        cast(control_revenue_per_customer as double) as control_revenue_per_customer,
        cast(revenue_lift_per_customer as double) as revenue_lift_per_customer,
        {{ interval('revenue_lift', 'revenue_lift_per_customer', 'revenue_lift_se') }},
        cast(treated_revenue_per_customer / nullif(control_revenue_per_customer, 0) - 1 as double)
            as revenue_relative_lift,
        {{ interval('revenue_relative_lift', 'log_revenue_ratio', 'log_revenue_ratio_se', ('exp(', ') - 1')) }},

        {{ as_of_date() }} as as_of_date

    from errors

)

select * from final
