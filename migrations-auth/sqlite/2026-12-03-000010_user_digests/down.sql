DROP INDEX users_digest_idx;
