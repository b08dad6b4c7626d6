DROP TABLE vault.decoys;
DROP TABLE vault.quota_lifts;
