{#-
    Keep one row per `partition_by`: the first by `order_by` (e.g. latest first).
    QUALIFY runs on DuckDB and Snowflake; other warehouses would need a
    row_number() subquery, hence the dispatch.
-#}
{% macro deduplicate(relation, partition_by, order_by) -%}
    {{ return(adapter.dispatch('deduplicate', 'nextbest')(relation, partition_by, order_by)) }}
{%- endmacro %}

{% macro default__deduplicate(relation, partition_by, order_by) -%}
    select *
    from {{ relation }}
    qualify row_number() over (partition by {{ partition_by }} order by {{ order_by }}) = 1
{%- endmacro %}
