-- user_logins becomes range-partitioned by create_date: one partition a month
-- (user_logins_YYYY_MM) and user_logins_default for the rest (a month without a partition yet,
-- and the rows without a date that Fetch's table allows). An existing table, Fetch's or ours,
-- is converted in this migration's transaction: every row moves over, the columns stay as they
-- were. The idempotency key becomes (message_id, create_date): a partitioned table's unique
-- index must hold the partition key, and a redelivered message keeps its SentTimestamp, so its
-- create_date too.

-- Creates the partition of the month that holds `day` unless it exists; the rows of that month
-- already in the default partition move into it first (the default partition may not keep
-- rows of an attached range). Returns whether it created one. Serialised by an advisory lock,
-- so writers starting together never race. It runs with the rights of the role that migrated
-- (the table's owner), so a writer whose runtime role may only insert can still call it; every
-- name in it is schema-qualified and the search path fixed.
CREATE OR REPLACE FUNCTION public.fetchreward_ensure_login_partition(day date)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    first_day date := date_trunc('month', day)::date;
    next_first date := (date_trunc('month', day) + interval '1 month')::date;
    part_name text := format('user_logins_%s', to_char(first_day, 'YYYY_MM'));
BEGIN
    PERFORM pg_advisory_xact_lock(7382913546140218434); -- "fr partitions"
    IF to_regclass(format('public.%I', part_name)) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format(
        'CREATE TABLE public.%I (LIKE public.user_logins INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
        part_name);
    EXECUTE format(
        'WITH moved AS (DELETE FROM public.user_logins_default '
        'WHERE create_date >= %L AND create_date < %L RETURNING *) '
        'INSERT INTO public.%I SELECT * FROM moved',
        first_day, next_first, part_name);
    EXECUTE format(
        'ALTER TABLE public.user_logins ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)',
        part_name, first_day, next_first);
    RETURN true;
END
$$;

-- The partitions of the month of `from_day` and of the `months_ahead` months after it; returns
-- how many it created. The writer calls it right after migrating, at every start-up, and daily.
CREATE OR REPLACE FUNCTION public.fetchreward_ensure_login_partitions(from_day date, months_ahead integer)
RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FILTER (WHERE created)::integer
    FROM generate_series(0, months_ahead) AS ahead,
         LATERAL public.fetchreward_ensure_login_partition(
             (date_trunc('month', from_day) + ahead * interval '1 month')::date) AS created
$$;

DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'public.user_logins'::regclass) = 'p' THEN
        RETURN;
    END IF;
    ALTER TABLE public.user_logins RENAME TO user_logins_unpartitioned;
    ALTER INDEX IF EXISTS public.user_logins_message_id_key
        RENAME TO user_logins_unpartitioned_message_id_key;
    CREATE TABLE public.user_logins
        (LIKE public.user_logins_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
        PARTITION BY RANGE (create_date);
    CREATE TABLE public.user_logins_default PARTITION OF public.user_logins DEFAULT;
    CREATE UNIQUE INDEX user_logins_message_id_create_date_key
        ON public.user_logins (message_id, create_date);
    -- A partition for every month the rows have, then the rows, straight into them.
    PERFORM public.fetchreward_ensure_login_partition(month)
    FROM (SELECT DISTINCT date_trunc('month', create_date)::date AS month
          FROM public.user_logins_unpartitioned
          WHERE create_date IS NOT NULL) AS months;
    INSERT INTO public.user_logins SELECT * FROM public.user_logins_unpartitioned;
    DROP TABLE public.user_logins_unpartitioned;
END
$$;
