{#-
    The point in time the marts are "current" at: var `as_of` ('YYYY-MM-DD'),
    default today. Everything after the end of that day is ignored.
-#}
{% macro as_of_date() -%}
    {%- set as_of = var('as_of', none) -%}
    {%- if as_of is none or (as_of | string | trim) == '' -%}
        cast(current_date as date)
    {%- else -%}
        cast('{{ as_of | string | trim }}' as date)
    {%- endif -%}
{%- endmacro %}

{#- First instant after the as_of day: keep rows with `ts < as_of_end()`. -#}
{% macro as_of_end() -%}
    cast({{ dbt.dateadd('day', 1, as_of_date()) }} as {{ dbt.type_timestamp() }})
{%- endmacro %}

{#- Whole days from a timestamp/date to the as_of day (0 = on the as_of day). -#}
{% macro days_before_as_of(column) -%}
    {{ dbt.datediff(column, as_of_date(), 'day') }}
{%- endmacro %}
