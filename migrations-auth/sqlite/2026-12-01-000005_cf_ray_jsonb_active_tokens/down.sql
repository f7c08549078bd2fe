DROP INDEX service_tokens_active_idx;
ALTER TABLE authentication_events DROP COLUMN cf_ray;
