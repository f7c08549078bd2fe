-- Digests of id ranges for reconciliation (service-kit db/digest.rs; the
-- id_hash function is registered on each connection): an index that
-- answers a range's count and sum from the index alone.
CREATE INDEX users_digest_idx ON users (id, version);
