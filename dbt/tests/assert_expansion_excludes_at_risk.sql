-- Attached to customer_segments as a Dagster asset check (the test reads several models).
{{ config(meta={'dagster': {'ref': {'name': 'customer_segments'}}}) }}
-- Expansion offers go to happy customers: nobody in expansion is also at risk.
select expansion.customer_id
from {{ ref('customer_segments') }} as expansion
inner join {{ ref('customer_segments') }} as at_risk
    on expansion.customer_id = at_risk.customer_id
where expansion.segment = 'expansion'
  and at_risk.segment = 'at_risk'
