-- The table as Fetch's take-home database creates it. On a database that already has it
-- (possibly with rows), this statement does nothing and the additions below keep every row.
CREATE TABLE IF NOT EXISTS user_logins(
    user_id varchar(128),
    device_type varchar(32),
    masked_ip varchar(256),
    masked_device_id varchar(256),
    locale varchar(32),
    app_version integer,
    create_date date
);

-- The SQS MessageId of the row's message: the idempotency key. Rows written before this
-- column existed keep NULL, which the unique index allows any number of times.
ALTER TABLE user_logins ADD COLUMN IF NOT EXISTS message_id varchar(128);

-- The app_version string as sent; `app_version` keeps its integer form.
ALTER TABLE user_logins ADD COLUMN IF NOT EXISTS app_version_raw varchar(32);

CREATE UNIQUE INDEX IF NOT EXISTS user_logins_message_id_key ON user_logins (message_id);
