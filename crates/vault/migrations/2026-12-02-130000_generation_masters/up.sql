-- A data key generation may be wrapped by a KMS key made for it alone (VAULT_GENERATION_KMS_KEYS),
-- which is scheduled for deletion when the generation retires. The flag is part of the row's
-- binding, so that it cannot be set behind the vault's back to have a shared key deleted.
ALTER TABLE vault.keys
    ADD COLUMN own_master boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT keys_own_master_is_data CHECK (purpose = 'data' OR NOT own_master);

REVOKE INSERT ON vault.keys FROM fetchreward_vault_runtime;
GRANT INSERT (purpose, version, wrapped, kms_key_id, activates_at, deployment, binding, own_master)
    ON vault.keys TO fetchreward_vault_runtime;
