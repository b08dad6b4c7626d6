REVOKE ALL ON ALL TABLES IN SCHEMA vault FROM fetchreward_vault_runtime;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA vault FROM fetchreward_vault_runtime;
REVOKE USAGE ON SCHEMA vault FROM fetchreward_vault_runtime;
DROP TRIGGER audit_log_no_truncate ON vault.audit_log;
DROP TRIGGER audit_log_no_update_or_delete ON vault.audit_log;
DROP FUNCTION vault.audit_log_is_append_only();
DROP TABLE vault.audit_head;
ALTER TABLE vault.audit_log DROP COLUMN link;
