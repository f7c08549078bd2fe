DROP TABLE corpus_data;
DROP TABLE tool_usage_logs;
DROP TABLE agent_sessions;
DROP TABLE secrets;
DROP TABLE user_settings;
DROP TABLE tasks;
