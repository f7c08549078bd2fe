-- Digests of id ranges for reconciliation (service-kit db/digest.rs): the
-- id's low 31 bits, from its last four bytes, as Rust's digest::id_hash
-- computes them (SQLite registers the same function on each connection),
-- and an index that answers a range's count and sum from the index alone.
CREATE OR REPLACE FUNCTION id_hash(id uuid) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ((get_byte(uuid_send(id), 12) & 127)::bigint << 24)
               + (get_byte(uuid_send(id), 13) << 16)
               + (get_byte(uuid_send(id), 14) << 8)
               + get_byte(uuid_send(id), 15) $$;
CREATE INDEX users_digest_idx ON users (id) INCLUDE (version);
