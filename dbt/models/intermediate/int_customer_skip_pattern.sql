-- Per customer: how their recent deliveries went - skips among the last N cycles
-- (N = var cadence_mismatch_cycles), the current run of skips, and flips between
-- skipping and receiving (skipping every other order flips on every cycle).

with

cycles as (

    select * from {{ ref('int_orders_per_cycle') }}

),

final as (

    select
        customer_id,
        count(*) as lifetime_cycles,
        sum(case when cycles_ago < {{ var('cadence_mismatch_cycles') }} then 1 else 0 end)
            as recent_cycles,
        sum(case when cycles_ago < {{ var('cadence_mismatch_cycles') }} and is_skipped
                 then 1 else 0 end) as recent_cycle_skips,
        sum(case when cycles_ago < {{ var('cadence_mismatch_cycles') }} - 1 and is_pattern_flip
                 then 1 else 0 end) as recent_cycle_flips,
        -- skips in a row up to the latest cycle: cycles since the last one not skipped
        coalesce(min(case when not is_skipped then cycles_ago end), count(*))
            as consecutive_skips,
        max(ordered_at) as last_cycle_at

    from cycles
    group by customer_id

)

select * from final
