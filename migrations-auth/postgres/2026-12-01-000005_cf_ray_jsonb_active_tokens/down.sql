DROP INDEX service_tokens_active_idx;
ALTER TABLE service_tokens ALTER COLUMN metadata TYPE TEXT USING metadata::text;
ALTER TABLE authentication_events DROP COLUMN cf_ray;
