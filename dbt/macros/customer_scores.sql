{#-
    The propensity scores for the as_of day: rows of source nextbest.customer_scores
    scored at as_of (the scoring point of customer_features), so a rebuild of a past
    day never uses scores from a later day. While the table does
    not exist yet (dbt run before any scoring) this is an empty relation with the
    same columns, and the segments fall back to their behaviour rules.
-#}
{% macro customer_scores() -%}
    {%- set relation = source('nextbest', 'customer_scores') -%}
    {%- if execute and load_relation(relation) is none -%}
    (
        select
            cast(null as {{ dbt.type_string() }}) as customer_id,
            cast(null as date) as as_of_date,
            cast(null as {{ dbt.type_float() }}) as p_churn,
            cast(null as {{ dbt.type_float() }}) as p_skip,
            cast(null as {{ dbt.type_float() }}) as p_upgrade,
            cast(null as {{ dbt.type_float() }}) as p_discount_response,
            cast(null as {{ dbt.type_float() }}) as predicted_value_90d
        where 1 = 0
    )
    {%- else -%}
    (
        select customer_id, as_of_date, p_churn, p_skip, p_upgrade, p_discount_response, predicted_value_90d
        from {{ relation }}
        where as_of_date = {{ as_of_date() }}
    )
    {%- endif -%}
{%- endmacro %}
