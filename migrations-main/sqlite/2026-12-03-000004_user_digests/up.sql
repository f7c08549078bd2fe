-- Digests of id ranges for reconciliation (service-kit db/digest.rs; the
-- id_hash function is registered on each connection): an index that
-- answers a range's count and sum from the index alone.
CREATE INDEX userbase_digest_idx ON userbase (id, auth_version);
