{#-
    Predicted 12-month CLV for the as_of day from source nextbest.customer_predictions
    (Dagster asset `customer_predictions`). While that table does not exist yet (dbt run
    before any prediction) this is an empty relation with the same columns, and the
    high-LTV tag ranks customers by historic lifetime value alone.
-#}
{% macro customer_predictions() -%}
    {%- set relation = source('nextbest', 'customer_predictions') -%}
    {%- if execute and load_relation(relation) is none -%}
    (
        select
            cast(null as {{ dbt.type_string() }}) as customer_id,
            cast(null as {{ dbt.type_float() }}) as predicted_clv_12m
        where 1 = 0
    )
    {%- else -%}
    (
        select customer_id, predicted_clv_12m
        from {{ relation }}
        where as_of_date = {{ as_of_date() }}
    )
    {%- endif -%}
{%- endmacro %}
