-- Back to one unpartitioned table with message_id unique. Fails, keeping everything, if a
-- message_id appears under two dates (possible only with the partitioned key).
ALTER TABLE public.user_logins RENAME TO user_logins_partitioned;
CREATE TABLE public.user_logins
    (LIKE public.user_logins_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
INSERT INTO public.user_logins SELECT * FROM public.user_logins_partitioned;
DROP TABLE public.user_logins_partitioned;
CREATE UNIQUE INDEX user_logins_message_id_key ON public.user_logins (message_id);
DROP FUNCTION public.fetchreward_ensure_login_partitions(date, integer);
DROP FUNCTION public.fetchreward_ensure_login_partition(date);
