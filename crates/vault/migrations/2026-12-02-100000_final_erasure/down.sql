DROP INDEX IF EXISTS vault.pii_tokens_live_data_key_version;
CREATE INDEX IF NOT EXISTS pii_tokens_data_key_version
    ON vault.pii_tokens (data_key_version) WHERE ciphertext IS NOT NULL;
ALTER TABLE vault.pii_tokens DROP COLUMN unreadable_at;
ALTER TABLE vault.pii_tokens DROP CONSTRAINT pii_tokens_tombstone_is_forgotten;
ALTER TABLE vault.pii_tokens DROP COLUMN tombstone;
REVOKE INSERT, UPDATE ON vault.keys FROM fetchreward_vault_runtime;
GRANT INSERT ON vault.keys TO fetchreward_vault_runtime;
DELETE FROM vault.keys WHERE retired_at IS NOT NULL;
ALTER TABLE vault.keys
    DROP CONSTRAINT keys_only_data_retires,
    DROP CONSTRAINT keys_retired_iff_unwrapped,
    DROP CONSTRAINT keys_bound,
    ALTER COLUMN wrapped SET NOT NULL,
    DROP COLUMN kms_deletion_at,
    DROP COLUMN retired_at,
    DROP COLUMN legacy,
    DROP COLUMN binding,
    DROP COLUMN deployment;
