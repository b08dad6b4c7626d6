REVOKE INSERT ON vault.keys FROM fetchreward_vault_runtime;
GRANT INSERT (purpose, version, wrapped, kms_key_id, activates_at, deployment, binding)
    ON vault.keys TO fetchreward_vault_runtime;
ALTER TABLE vault.keys
    DROP CONSTRAINT keys_own_master_is_data,
    DROP COLUMN own_master;
