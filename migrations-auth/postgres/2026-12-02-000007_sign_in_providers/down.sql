DROP TABLE oauth_flows;
ALTER TABLE oauth_tokens DROP COLUMN email;
