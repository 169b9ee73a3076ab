{#- Words in a text: spaces + 1 after trimming (0 for empty or null text). -#}
{% macro word_count(column) -%}
    case
        when {{ column }} is null or trim({{ column }}) = '' then 0
        else {{ dbt.length('trim(' ~ column ~ ')') }}
            - {{ dbt.length(dbt.replace('trim(' ~ column ~ ')', "' '", "''")) }} + 1
    end
{%- endmacro %}

{#- True when a text opens with a greeting ("Hi there!", "Hello team,", "Dear ..."). -#}
{% macro starts_with_greeting(column) -%}
    {%- set greetings = ['hi ', 'hi,', 'hi!', 'hello', 'hey', 'dear ', 'good morning',
                         'good afternoon', 'good evening', 'greetings'] -%}
    (
        {%- for g in greetings %}
        lower(trim({{ column }})) like '{{ g }}%'{% if not loop.last %} or{% endif %}
        {%- endfor %}
    )
{%- endmacro %}
