DROP TABLE vault.audit_log;
DROP TABLE vault.pii_tokens;
DROP TABLE vault.keys;
