{#-
    Use custom schema names verbatim: staging -> `staging`, intermediate ->
    `intermediate`, marts -> `analytics`, on every target (dbt's default would
    prefix them with the target schema, e.g. `main_staging`).
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
