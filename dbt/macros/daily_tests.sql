{#-
    Daily runs test only the recent rows of the large event and history tables: a model
    whose config has `meta: {daily_test_column: <date or timestamp column>}` is tested on
    the rows from var daily_test_days days before as_of on (the days a daily run can
    change). A `--full-refresh` run, or daily_test_days: 0, tests every row. dbt calls
    this macro for every generic test's model; a test's own `where` config still applies.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [config.get('where', '')] -%}
    {%- do conditions.append(daily_test_filter(relation)) -%}
    {%- set conditions = conditions | select | list -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ conditions | join(' and ') ~ ') dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#- The recent-rows condition for `relation` on a daily run, or '' (test every row). -#}
{% macro daily_test_filter(relation) -%}
    {%- set days = var('daily_test_days') | int -%}
    {%- if not execute or flags.FULL_REFRESH or days < 1 -%}
        {{ return('') }}
    {%- endif -%}
    {%- for node in graph.nodes.values()
            if node.resource_type in ('model', 'snapshot')
            and (node.alias or node.name) | lower == (relation.identifier or '') | lower
            and node.schema | lower == (relation.schema or '') | lower -%}
        {%- set column = (node.config.meta or {}).get('daily_test_column') -%}
        {%- if column -%}
            {{ return(column ~ " >= " ~ (dbt.dateadd("day", -days, as_of_date()) | trim)) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return('') }}
{%- endmacro %}
