{#-
    The segment and tag thresholds (vars in dbt_project.yml) with what each must be. A value that
    is not one (a typo, a share written as a percentage, min above max) fails the build here,
    naming the var and what it should be, instead of as a database error in the middle of the
    SQL or a segment that silently empties. Called by customer_segments and customer_tags.
-#}
{% macro check_threshold_vars() -%}
    {%- if execute -%}
    {#- var -> (whole number?, lowest, highest or none) -#}
    {%- set rules = {
        'repeat_issue_window_days': (true, 1, none),
        'repeat_issue_lookback_days': (true, 1, none),
        'tone_warm_greeting_share': (false, 0, 1),
        'tone_warm_min_words': (true, 0, none),
        'at_risk_engagement_drop_ratio': (false, 0, 1),
        'at_risk_min_prior_engagement': (true, 0, none),
        'at_risk_cancel_attempt_days': (true, 1, none),
        'at_risk_consecutive_skips': (true, 1, none),
        'cadence_mismatch_cycles': (true, 1, none),
        'cadence_mismatch_min_skips': (true, 1, none),
        'cadence_mismatch_max_skips': (true, 1, none),
        'expansion_window_days': (true, 1, none),
        'onboarding_days': (true, 1, none),
        'dormant_days': (true, 1, none),
        'win_back_window_days': (true, 1, none),
        'high_ltv_top_share': (false, 0, 1),
        'brand_advocate_min_tenure_days': (true, 0, none),
        'brand_advocate_min_csat': (false, 1, 5),
        'brand_advocate_min_clicks_90d': (true, 0, none),
        'at_risk_min_p_churn': (false, 0, 1),
        'cadence_mismatch_min_p_skip': (false, 0, 1),
        'expansion_min_p_upgrade': (false, 0, 1),
        'expansion_min_orders': (true, 0, none),
    } -%}
    {%- for name, rule in rules.items() -%}
        {%- set value = var(name) -%}
        {%- set whole, low, high = rule -%}
        {%- set is_number = value is number and value is not sameas true and value is not sameas false -%}
        {%- if not is_number or (whole and value != value | int) or value < low
               or (high is not none and value > high) -%}
            {%- set wanted = ('a whole number' if whole else 'a number') ~ ' from ' ~ low
                             ~ (' to ' ~ high if high is not none else ' up') -%}
            {{ exceptions.raise_compiler_error("var " ~ name ~ " is " ~ value ~ ": expected " ~ wanted
                ~ " (dbt/dbt_project.yml says what it means)") }}
        {%- endif -%}
    {%- endfor -%}
    {%- if not (var('cadence_mismatch_min_skips') <= var('cadence_mismatch_max_skips') <= var('cadence_mismatch_cycles')) -%}
        {{ exceptions.raise_compiler_error("vars cadence_mismatch_min_skips (" ~ var('cadence_mismatch_min_skips')
            ~ ") <= cadence_mismatch_max_skips (" ~ var('cadence_mismatch_max_skips') ~ ") <= cadence_mismatch_cycles ("
            ~ var('cadence_mismatch_cycles') ~ ") must hold, or no one can be in cadence_mismatch") }}
    {%- endif -%}
    {%- endif -%}
{%- endmacro %}
