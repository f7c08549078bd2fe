DROP INDEX userbase_digest_idx;
