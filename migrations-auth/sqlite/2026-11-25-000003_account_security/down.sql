DROP TABLE mail_queue;
DROP TABLE mfa_recovery_codes;
DROP TABLE mfa_totp;
DROP TABLE login_lockouts;
