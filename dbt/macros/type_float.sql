{#- dbt's type_float is `float` everywhere; DuckDB's FLOAT is 4 bytes (39.6 comes back as
    39.599998) while Snowflake's is 8. Use DuckDB's 8-byte DOUBLE so both engines agree. -#}
{% macro duckdb__type_float() -%}
    double
{%- endmacro %}
