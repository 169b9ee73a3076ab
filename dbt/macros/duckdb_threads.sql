{#-
    Pre-hook (on=true) and post-hook (on=false) of a model too wide to deduplicate on every
    DuckDB thread at once: the window keeps a copy per thread, and at 1M subscribers
    stg_raw__email_events (41M rows) ran out of the profile's 6 GB memory_limit on two
    threads but not on one when every row was ranked. Since it ranks only re-sent ids
    (deduplicate's mostly_unique) a 1M full build finishes on two threads (36 s against 51 s)
    but reaches the limit, so the hook stays for headroom. Renders nothing on other warehouses.
-#}
{% macro one_duckdb_thread(on) -%}
    {{ return(adapter.dispatch('one_duckdb_thread', 'nextbest')(on)) }}
{%- endmacro %}

{% macro default__one_duckdb_thread(on) -%}
{%- endmacro %}

{% macro duckdb__one_duckdb_thread(on) -%}
    {%- if on %}set threads = 1{% else %}reset threads{% endif -%}
{%- endmacro %}
