-- The privacy team's workflows (docs/privacy.md): raised daily reveal limits and decoy tokens.

-- What admins added to one caller's daily reveal limit for one purpose ('' when purposes are
-- free text and the limit covers them all), each lift with the audit row that records it.
-- The values revealed so far are not kept here: they are summed from the audit trail itself.
CREATE TABLE vault.quota_lifts (
    id       bigserial PRIMARY KEY,
    day      date      NOT NULL,
    caller   text      NOT NULL,
    purpose  text      NOT NULL,
    extra    integer   NOT NULL CHECK (extra > 0),
    audit_id bigint    NOT NULL
);
CREATE INDEX quota_lifts_day_caller ON vault.quota_lifts (day, caller, purpose);

-- Tokens no value has, planted in user_logins as tripwires: revealing one is refused and
-- alerted on.
CREATE TABLE vault.decoys (
    token      text        PRIMARY KEY,
    kind       text        NOT NULL CHECK (kind IN ('ip', 'dev')),
    planted_at timestamptz NOT NULL DEFAULT now(),
    audit_id   bigint      NOT NULL
);

GRANT SELECT, INSERT ON vault.quota_lifts TO fetchreward_vault_runtime;
GRANT USAGE ON SEQUENCE vault.quota_lifts_id_seq TO fetchreward_vault_runtime;
GRANT SELECT, INSERT ON vault.decoys TO fetchreward_vault_runtime;
