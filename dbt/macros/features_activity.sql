{#-
    What int_features_activity sums from int_features_daily, shared with
    int_features_lifetime (which carries the lifetime sums and latest days forward
    from one daily run to the next).
-#}

{#- (feature, daily counter, weeks back; none = lifetime) -#}
{% macro activity_sums() -%}
{{ return([
    ('orders_lifetime', 'orders_charged', none),
    ('orders_4w', 'orders_charged', 4),
    ('orders_13w', 'orders_charged', 13),
    ('spend_lifetime', 'spend', none),
    ('spend_13w', 'spend', 13),
    ('skips_lifetime', 'skips', none),
    ('skips_4w', 'skips', 4),
    ('skips_13w', 'skips', 13),
    ('failed_orders_13w', 'orders_failed', 13),
    ('discounted_orders_lifetime', 'discounted_orders', none),
    ('one_time_orders_lifetime', 'one_time_orders', none),
    ('add_ons_lifetime', 'add_ons', none),
    ('add_ons_4w', 'add_ons', 4),
    ('add_ons_13w', 'add_ons', 13),
    ('emails_sent_4w', 'emails_sent', 4),
    ('emails_sent_13w', 'emails_sent', 13),
    ('opens_4w', 'opens', 4),
    ('opens_13w', 'opens', 13),
    ('clicks_4w', 'clicks', 4),
    ('clicks_13w', 'clicks', 13),
    ('conversions_lifetime', 'conversions', none),
    ('playbook_sends_13w', 'playbook_sends', 13),
    ('discount_sends_lifetime', 'discount_sends', none),
    ('discount_conversions_lifetime', 'discount_conversions', none),
    ('opt_outs_lifetime', 'opt_outs', none),
    ('bounces_lifetime', 'bounces', none),
    ('logins_4w', 'logins', 4),
    ('logins_13w', 'logins', 13),
    ('portal_actions_4w', 'portal_actions', 4),
    ('cancel_attempts_4w', 'cancel_attempts', 4),
    ('cancel_attempts_13w', 'cancel_attempts', 13),
    ('cancel_attempts_lifetime', 'cancel_attempts', none),
    ('pauses_13w', 'pauses', 13),
    ('reschedules_13w', 'reschedules', 13),
    ('product_swaps_13w', 'product_swaps', 13),
    ('cadence_changes_lifetime', 'cadence_changes', none),
    ('reactivations_lifetime', 'reactivations', none),
    ('payment_updates_13w', 'payment_updates', 13),
    ('engagement_4w', 'engagement', 4),
    ('engagement_17w', 'engagement', 17),
    ('tickets_lifetime', 'tickets_opened', none),
    ('tickets_13w', 'tickets_opened', 13),
    ('tickets_resolved_lifetime', 'tickets_resolved', none),
    ('cancel_request_tickets_13w', 'cancel_request_tickets', 13),
    ('delivery_tickets_13w', 'delivery_tickets', 13),
    ('csat_ratings_lifetime', 'csat_ratings', none),
    ('csat_points_lifetime', 'csat_points', none),
    ('payment_failures_13w', 'payment_failures', 13),
    ('cancellations_lifetime', 'cancellations', none),
    ('upgrades_lifetime', 'upgrades', none),
]) }}
{%- endmacro %}

{#- (feature, daily counter): the latest day the counter was above zero -#}
{% macro activity_latest() -%}
{{ return([
    ('last_order_date', 'orders_charged'),
    ('last_add_on_date', 'add_ons'),
    ('last_skip_date', 'skips'),
    ('last_playbook_send_date', 'playbook_sends'),
    ('last_engagement_date', 'any_engagement'),
    ('last_cancellation_date', 'cancellations'),
]) }}
{%- endmacro %}

{#- The type int_features_daily keeps a daily counter in: money for spend, else a 4-byte integer
    (sums of them are cast back to it: DuckDB would widen them to 16 bytes). -#}
{% macro daily_counter_type(counter) -%}
    {{ type_money() if counter == 'spend' else dbt.type_int() }}
{%- endmacro %}

{#- The derived daily counters some features read, added to int_features_daily's columns. -#}
{% macro activity_derived_counters() -%}
        opens + clicks + logins as engagement,
        opens + clicks + logins + portal_actions as any_engagement
{%- endmacro %}

{#-
    int_features_daily with the derived counters, as a subquery to select from. Not a CTE:
    one read twice is materialized in full, and the date filters of its readers would not
    reach the scan.
-#}
{% macro daily_activity() -%}
    (
        select
            *,
            {{ activity_derived_counters() }}

        from {{ ref('int_features_daily') }}
    )
{%- endmacro %}

{#-
    The lifetime sums and latest days of the rows of `daily` (int_features_daily with the
    derived counters), one set per `group by` group: int_features_activity sums the days
    before its first new point with them, int_features_lifetime the newly settled days.
-#}
{% macro lifetime_aggregates(daily='daily') -%}
    {%- for name, counter, weeks in activity_sums() if weeks is none %}
        sum({{ daily }}.{{ counter }}) as {{ name }},
    {%- endfor %}
    {%- for name, counter in activity_latest() %}
        max(case when {{ daily }}.{{ counter }} > 0 then {{ daily }}.activity_date end) as {{ name }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}
