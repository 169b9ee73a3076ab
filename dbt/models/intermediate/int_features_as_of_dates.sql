-- The points in time features and labels are computed at: every Monday from the
-- second week with data up to the as_of day, plus the as_of day itself (the scoring
-- point: complete days only, so a 05:00 run does not score on a few hours of today).
-- A feature row "at D" uses only events before D 00:00 UTC; its labels use [D, D + 30 days).

with

daily as (

    select activity_date from {{ ref('int_features_daily') }}

),

first_week as (

    -- weeks start on Monday on DuckDB and on Snowflake's default WEEK_START
    select cast({{ dbt.date_trunc('week', 'min(activity_date)') }} as date) as week_start
    from daily

),

digits as (

    select 0 as d union all select 1 union all select 2 union all select 3 union all select 4
    union all select 5 union all select 6 union all select 7 union all select 8 union all select 9

),

week_numbers as (

    -- 1 .. 999 weeks (19 years) after the first week with data
    select hundreds.d * 100 + tens.d * 10 + ones.d as week_number
    from digits as hundreds
    cross join digits as tens
    cross join digits as ones
    where hundreds.d * 100 + tens.d * 10 + ones.d > 0

),

weekly as (

    select
        cast({{ dbt.dateadd('day', 'week_numbers.week_number * 7', 'first_week.week_start') }} as date)
            as as_of_date
    from first_week
    cross join week_numbers

),

points as (

    select as_of_date, false as is_scoring_point
    from weekly
    where as_of_date <= {{ as_of_date() }}

    union all

    select {{ as_of_date() }} as as_of_date, true as is_scoring_point

),

final as (

    -- a Monday scoring point appears twice above: keep one row, flagged as scoring
    select
        as_of_date,
        max(case when is_scoring_point then 1 else 0 end) = 1 as is_scoring_point,
        cast(as_of_date as {{ dbt.type_timestamp() }}) as as_of_at

    from points
    group by as_of_date

)

select * from final
