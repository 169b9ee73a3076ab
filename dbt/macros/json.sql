{#-
    One field of a JSON text column as text (e.g. portal_events.properties).
    DuckDB and Snowflake spell JSON access differently, hence the dispatch.
-#}
{% macro json_text(column, key) -%}
    {{ return(adapter.dispatch('json_text', 'nextbest')(column, key)) }}
{%- endmacro %}

{% macro default__json_text(column, key) -%}
    json_extract_string({{ column }}, '$.{{ key }}')
{%- endmacro %}

{% macro snowflake__json_text(column, key) -%}
    parse_json({{ column }}):{{ key }}::varchar
{%- endmacro %}
