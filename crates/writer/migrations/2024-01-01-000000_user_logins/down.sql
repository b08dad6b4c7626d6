-- Only what the up migration added is removed: the table and its rows belong to Fetch's
-- schema and stay.
DROP INDEX IF EXISTS user_logins_message_id_key;
ALTER TABLE user_logins DROP COLUMN IF EXISTS app_version_raw;
ALTER TABLE user_logins DROP COLUMN IF EXISTS message_id;
