{#- Money as an exact decimal with cents, the same on DuckDB and Snowflake. -#}
{% macro type_money() -%}
    decimal(18, 2)
{%- endmacro %}

{#- An order line's id (stg_raw__order_items): the order and the product, as text, joined by '|'. -#}
{% macro order_item_id(order_id, product_id) -%}
    {{ dbt.concat(['cast(' ~ order_id ~ ' as ' ~ dbt.type_string() ~ ')', "'|'",
                   'cast(' ~ product_id ~ ' as ' ~ dbt.type_string() ~ ')']) }}
{%- endmacro %}
