DROP TABLE leases;
DROP TABLE revocations;
DROP TABLE sync_runs;
DROP TABLE processed_webhooks;
DROP TABLE user_tombstones;
DROP TABLE userbase;
