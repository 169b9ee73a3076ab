{#-
    True for a playbook campaign whose brief carries a discount offer
    (campaign ids look like pb-<playbook_id>-YYYY-MM-DD; var discount_playbooks).
-#}
{% macro is_discount_campaign(column) -%}
    {%- for playbook in var('discount_playbooks') %}
    {{ column }} like 'pb-{{ playbook }}-%'{% if not loop.last %} or{% endif %}
    {%- endfor %}
{%- endmacro %}
