{#- Money as an exact decimal with cents, the same on DuckDB and Snowflake. -#}
{% macro type_money() -%}
    decimal(18, 2)
{%- endmacro %}
