ALTER TABLE vault.audit_log DROP COLUMN detail;
DROP INDEX vault.pii_tokens_data_key_version;
ALTER TABLE vault.keys DROP COLUMN activates_at;
