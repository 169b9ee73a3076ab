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

{#-
    Called by the marts built from customer_context (segments, tags): stop when customer_context
    is for another day than this build's as_of. `--select customer_segments+` at another as_of
    would otherwise apply that day's rules to another day's context (and record spurious entries
    and exits in the segment history). Nothing to compare before customer_context has rows.
-#}
{% macro require_context_at_as_of() -%}
    {%- if execute -%}
        {%- set context = ref('customer_context') -%}
        {%- if adapter.get_relation(database=context.database, schema=context.schema,
                                    identifier=context.identifier) is not none -%}
            {%- set found = run_query("select cast(max(as_of_date) as " ~ dbt.type_string() ~ ") as context_day, "
                                      ~ "cast(" ~ as_of_date() ~ " as " ~ dbt.type_string() ~ ") as wanted from "
                                      ~ context) -%}
            {%- set context_day = found.columns[0].values()[0] -%}
            {%- set wanted = found.columns[1].values()[0] -%}
            {%- if context_day is not none and context_day != wanted -%}
                {{ exceptions.raise_compiler_error("customer_context is for " ~ context_day ~ " but this build's as_of is "
                    ~ wanted ~ ": build customer_context at that as_of too (select +" ~ this.identifier
                    ~ ", or build everything)") }}
            {%- endif -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
