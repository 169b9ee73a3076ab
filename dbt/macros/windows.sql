{#- True for a date in the `days` days before `as_of` (as_of itself excluded by the caller's join). -#}
{% macro in_last_days(date_column, days, as_of) -%}
    {{ date_column }} >= {{ dbt.dateadd('day', -days, as_of) }}
{%- endmacro %}
