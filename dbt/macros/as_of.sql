{#-
    The point in time the marts are "current" at: var `as_of` ('YYYY-MM-DD'),
    default today in UTC (timestamps are UTC; the Python assets take the same day,
    dagster_project/project.py). Everything after the end of that day is ignored.
    Not current_date: it is the session's time zone's day (DuckDB: the machine's; Snowflake:
    America/Los_Angeles by default), so for hours of each day the marts were built for another
    day than the scores were written for. The day the dbt invocation started, so every model
    of a run that crosses midnight has the same as_of.
-#}
{% macro as_of_date() -%}
    {%- set as_of = var('as_of', none) -%}
    {%- if as_of is none or (as_of | string | trim) == '' -%}
        {%- set started = run_started_at or modules.datetime.datetime.now(modules.pytz.utc) -%}
        cast('{{ started.astimezone(modules.pytz.utc).strftime("%Y-%m-%d") }}' as date)
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
