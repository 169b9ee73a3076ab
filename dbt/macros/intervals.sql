{#- The two-sided 95% normal quantile times `se` (campaign_performance). -#}
{% macro z_times(se) -%} 1.959963984540054 * {{ se }} {%- endmacro %}

{#-
    A 95% interval as two columns, `name`_ci_low and `name`_ci_high: `estimate` -/+ z * `se`,
    each wrapped in `outside` (e.g. ('exp(', ') - 1') for the log of a ratio), cast to double.
-#}
{% macro interval(name, estimate, se, outside=('', '')) -%}
        cast({{ outside[0] }}{{ estimate }} - {{ z_times(se) }}{{ outside[1] }} as double) as {{ name }}_ci_low,
        cast({{ outside[0] }}{{ estimate }} + {{ z_times(se) }}{{ outside[1] }} as double) as {{ name }}_ci_high
{%- endmacro %}
