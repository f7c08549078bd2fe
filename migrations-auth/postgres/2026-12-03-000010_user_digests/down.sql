DROP INDEX users_digest_idx;
DROP FUNCTION IF EXISTS id_hash(uuid);
