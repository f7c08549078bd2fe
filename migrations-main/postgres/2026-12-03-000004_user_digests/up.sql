-- Digests of id ranges for reconciliation (service-kit db/digest.rs): the
-- id's low 31 bits, as Rust's digest::id_hash computes them (SQLite
-- registers the same function on each connection), and an index that
-- answers a range's count and sum from the index alone.
CREATE OR REPLACE FUNCTION id_hash(id uuid) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ('x' || right(replace(id::text, '-', ''), 8))::bit(32)::bigint & 2147483647 $$;
CREATE INDEX userbase_digest_idx ON userbase (id) INCLUDE (auth_version);
