CREATE DATABASE IF NOT EXISTS records ON CLUSTER records_cluster;

CREATE DATABASE IF NOT EXISTS analyst ON CLUSTER records_cluster;

CREATE TABLE IF NOT EXISTS records.chat_conversations_local ON CLUSTER records_cluster
(
    `event_id` String,
    `source_event_id` String,
    `subject_keys` Array(String),
    `conversation_id` String,
    `channel` String,
    `started_at` DateTime64(3, 'UTC'),
    `ended_at` Nullable(DateTime64(3, 'UTC')),
    `message_count` Int32,
    `name` Nullable(String),
    `email` Nullable(String),
    `phone` Nullable(String),
    `job_title` Nullable(String),
    `company_name` Nullable(String),
    `person_number` Nullable(String),
    `app_username` Nullable(String),
    `postal_address` Nullable(String),
    `app_name` Nullable(String),
    `app_version` Nullable(String),
    `visitor_id` Nullable(String),
    `user_agent` Nullable(String),
    `ip_address` Nullable(String),
    `browser` Nullable(String),
    `os` Nullable(String),
    `device_type` Nullable(String),
    `isp_org` Nullable(String),
    `visit_count` Nullable(Int32),
    `chat_count` Nullable(Int32),
    `referrer_url` Nullable(String),
    `page_url` Nullable(String),
    `visit_duration_s` Nullable(Int32),
    `city` Nullable(String),
    `latitude` Nullable(Float64),
    `longitude` Nullable(Float64),
    `contact_consent` Bool,
    `cookie_functional` Bool,
    `cookie_analytics` Bool,
    `cookie_marketing` Bool,
    `geolocation_permission` Bool,
    `stripped` Array(String),
    `ingested_at` DateTime64(3, 'UTC'),
    `expires_at` DateTime64(3, 'UTC'),
    INDEX subject_keys_idx subject_keys TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/records/chat_conversations_local', '{replica}', ingested_at)
PARTITION BY toYYYYMM(started_at)
ORDER BY (event_id)
TTL `started_at` + INTERVAL 180 DAY DELETE
SETTINGS ttl_only_drop_parts = 0, merge_with_ttl_timeout = 3600;

CREATE TABLE IF NOT EXISTS records.chat_conversations ON CLUSTER records_cluster AS records.chat_conversations_local
ENGINE = Distributed(records_cluster, records, chat_conversations_local, cityHash64(event_id));

CREATE TABLE IF NOT EXISTS records.chat_messages_local ON CLUSTER records_cluster
(
    `event_id` String,
    `source_event_id` String,
    `subject_keys` Array(String),
    `conversation_id` String,
    `message_id` String,
    `channel` String,
    `sent_at` DateTime64(3, 'UTC'),
    `sender` String,
    `agent_username` Nullable(String),
    `text` String,
    `stripped` Array(String),
    `ingested_at` DateTime64(3, 'UTC'),
    `expires_at` DateTime64(3, 'UTC'),
    INDEX subject_keys_idx subject_keys TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/records/chat_messages_local', '{replica}', ingested_at)
PARTITION BY toYYYYMM(sent_at)
ORDER BY (event_id)
TTL `sent_at` + INTERVAL 180 DAY DELETE
SETTINGS ttl_only_drop_parts = 0, merge_with_ttl_timeout = 3600;

CREATE TABLE IF NOT EXISTS records.chat_messages ON CLUSTER records_cluster AS records.chat_messages_local
ENGINE = Distributed(records_cluster, records, chat_messages_local, cityHash64(event_id));

CREATE TABLE IF NOT EXISTS records.calls_local ON CLUSTER records_cluster
(
    `event_id` String,
    `source_event_id` String,
    `subject_keys` Array(String),
    `call_id` String,
    `direction` String,
    `caller_number` Nullable(String),
    `service_number` String,
    `started_at` DateTime64(3, 'UTC'),
    `answered_at` Nullable(DateTime64(3, 'UTC')),
    `ended_at` DateTime64(3, 'UTC'),
    `duration_s` Int32,
    `answered_by_number` Nullable(String),
    `answered_by_user` Nullable(String),
    `stripped` Array(String),
    `ingested_at` DateTime64(3, 'UTC'),
    `expires_at` DateTime64(3, 'UTC'),
    INDEX subject_keys_idx subject_keys TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/records/calls_local', '{replica}', ingested_at)
PARTITION BY toYYYYMM(started_at)
ORDER BY (event_id)
TTL `started_at` + INTERVAL 2 YEAR DELETE
SETTINGS ttl_only_drop_parts = 0, merge_with_ttl_timeout = 3600;

CREATE TABLE IF NOT EXISTS records.calls ON CLUSTER records_cluster AS records.calls_local
ENGINE = Distributed(records_cluster, records, calls_local, cityHash64(event_id));

CREATE TABLE IF NOT EXISTS records.call_recordings_local ON CLUSTER records_cluster
(
    `event_id` String,
    `source_event_id` String,
    `subject_keys` Array(String),
    `recording_id` String,
    `call_id` String,
    `caller_number` Nullable(String),
    `recording_uri` String,
    `notice_played_at` DateTime64(3, 'UTC'),
    `recording_started_at` DateTime64(3, 'UTC'),
    `recording_ended_at` DateTime64(3, 'UTC'),
    `duration_s` Int32,
    `stripped` Array(String),
    `ingested_at` DateTime64(3, 'UTC'),
    `expires_at` DateTime64(3, 'UTC'),
    INDEX subject_keys_idx subject_keys TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/records/call_recordings_local', '{replica}', ingested_at)
PARTITION BY toYYYYMM(recording_started_at)
ORDER BY (event_id)
TTL `recording_started_at` + INTERVAL 3 MONTH DELETE
SETTINGS ttl_only_drop_parts = 0, merge_with_ttl_timeout = 3600;

CREATE TABLE IF NOT EXISTS records.call_recordings ON CLUSTER records_cluster AS records.call_recordings_local
ENGINE = Distributed(records_cluster, records, call_recordings_local, cityHash64(event_id));

CREATE TABLE IF NOT EXISTS records.consent_ledger_local ON CLUSTER records_cluster
(
    `event_id` String,
    `source_event_id` String,
    `subject_keys` Array(String),
    `kind` String,
    `purpose` String,
    `status` String,
    `channel` String,
    `event_time` DateTime64(3, 'UTC'),
    `cookie_functional` Bool,
    `cookie_analytics` Bool,
    `cookie_marketing` Bool,
    `geolocation_permission` Bool,
    `evidence` Nullable(String),
    `stripped` Array(String),
    `ingested_at` DateTime64(3, 'UTC'),
    `expires_at` DateTime64(3, 'UTC'),
    INDEX subject_keys_idx subject_keys TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/records/consent_ledger_local', '{replica}', ingested_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (event_id)
TTL `event_time` + INTERVAL 2 YEAR DELETE
SETTINGS ttl_only_drop_parts = 0, merge_with_ttl_timeout = 3600;

CREATE TABLE IF NOT EXISTS records.consent_ledger ON CLUSTER records_cluster AS records.consent_ledger_local
ENGINE = Distributed(records_cluster, records, consent_ledger_local, cityHash64(event_id));

CREATE TABLE IF NOT EXISTS records.dsr_receipts_local ON CLUSTER records_cluster
(
    `request_id` String,
    `request_type` Enum8('ERASURE' = 1, 'ACCESS' = 2, 'RECTIFICATION' = 3, 'RESTRICTION' = 4, 'RESTRICTION_LIFTED' = 5, 'OBJECTION' = 6, 'CONSENT_WITHDRAWAL' = 7, 'UNKNOWN' = 8),
    `status` Enum8('COMPLETED' = 1, 'REJECTED' = 2, 'FAILED' = 3),
    `requested_at` DateTime64(3, 'UTC'),
    `completed_at` DateTime64(3, 'UTC'),
    `store_counts` Map(String, Int64),
    `detail` Nullable(String),
    `schema_version` Int32,
    `shard_counts` Map(String, Map(String, Int64)),
    `identity_verified_by` Nullable(String)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/records/dsr_receipts_local', '{replica}', completed_at)
PARTITION BY toYYYYMM(completed_at)
ORDER BY (request_id)
TTL `completed_at` + INTERVAL 5 YEAR DELETE
SETTINGS ttl_only_drop_parts = 0, merge_with_ttl_timeout = 3600;

CREATE TABLE IF NOT EXISTS records.dsr_receipts ON CLUSTER records_cluster AS records.dsr_receipts_local
ENGINE = Distributed(records_cluster, records, dsr_receipts_local, cityHash64(request_id));

CREATE TABLE IF NOT EXISTS records.contact_forms_local ON CLUSTER records_cluster
(
    `event_id` String,
    `source_event_id` String,
    `subject_keys` Array(String),
    `submission_id` String,
    `form_name` Nullable(String),
    `submitted_at` DateTime64(3, 'UTC'),
    `name` Nullable(String),
    `email` Nullable(String),
    `phone` Nullable(String),
    `company_name` Nullable(String),
    `message` String,
    `page_url` Nullable(String),
    `user_agent` Nullable(String),
    `contact_consent` Bool,
    `marketing_consent` Bool,
    `stripped` Array(String),
    `ingested_at` DateTime64(3, 'UTC'),
    `expires_at` DateTime64(3, 'UTC'),
    INDEX subject_keys_idx subject_keys TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/records/contact_forms_local', '{replica}', ingested_at)
PARTITION BY toYYYYMM(submitted_at)
ORDER BY (event_id)
TTL `submitted_at` + INTERVAL 180 DAY DELETE
SETTINGS ttl_only_drop_parts = 0, merge_with_ttl_timeout = 3600;

CREATE TABLE IF NOT EXISTS records.contact_forms ON CLUSTER records_cluster AS records.contact_forms_local
ENGINE = Distributed(records_cluster, records, contact_forms_local, cityHash64(event_id));

ALTER TABLE records.chat_conversations_local ON CLUSTER records_cluster MODIFY TTL `started_at` + INTERVAL 180 DAY DELETE;

ALTER TABLE records.chat_messages_local ON CLUSTER records_cluster MODIFY TTL `sent_at` + INTERVAL 180 DAY DELETE;

ALTER TABLE records.calls_local ON CLUSTER records_cluster MODIFY TTL `started_at` + INTERVAL 2 YEAR DELETE;

ALTER TABLE records.call_recordings_local ON CLUSTER records_cluster MODIFY TTL `recording_started_at` + INTERVAL 3 MONTH DELETE;

ALTER TABLE records.consent_ledger_local ON CLUSTER records_cluster MODIFY TTL `event_time` + INTERVAL 2 YEAR DELETE;

ALTER TABLE records.dsr_receipts_local ON CLUSTER records_cluster MODIFY TTL `completed_at` + INTERVAL 5 YEAR DELETE;

ALTER TABLE records.contact_forms_local ON CLUSTER records_cluster MODIFY TTL `submitted_at` + INTERVAL 180 DAY DELETE;

ALTER TABLE records.dsr_receipts_local ON CLUSTER records_cluster ADD COLUMN IF NOT EXISTS `shard_counts` Map(String, Map(String, Int64));

ALTER TABLE records.dsr_receipts ON CLUSTER records_cluster ADD COLUMN IF NOT EXISTS `shard_counts` Map(String, Map(String, Int64));

ALTER TABLE records.dsr_receipts_local ON CLUSTER records_cluster ADD COLUMN IF NOT EXISTS `identity_verified_by` Nullable(String);

ALTER TABLE records.dsr_receipts ON CLUSTER records_cluster ADD COLUMN IF NOT EXISTS `identity_verified_by` Nullable(String);

CREATE TABLE IF NOT EXISTS records.subject_restrictions ON CLUSTER records_cluster
(
    `subject_key` String,
    `kind` Enum8('RESTRICTION' = 1, 'OBJECTION' = 2),
    `active` Bool,
    `request_id` String,
    `updated_at` DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/records/subject_restrictions', '{replica}', updated_at)
ORDER BY (subject_key, kind);

RENAME TABLE IF EXISTS records.erasure_ledger TO records.erased_keys ON CLUSTER records_cluster;

CREATE TABLE IF NOT EXISTS records.erased_keys ON CLUSTER records_cluster
(
    `subject_key` String,
    `erased_at` DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/records/erased_keys', '{replica}', erased_at)
ORDER BY subject_key
TTL erased_at + INTERVAL 30 DAY DELETE;

ALTER TABLE records.erased_keys ON CLUSTER records_cluster DROP COLUMN IF EXISTS request_id;

ALTER TABLE records.erased_keys ON CLUSTER records_cluster MODIFY TTL erased_at + INTERVAL 30 DAY DELETE;

CREATE TABLE IF NOT EXISTS records.dsr_executed ON CLUSTER records_cluster
(
    `request_id` String,
    `request_type` String,
    `status` String,
    `requested_at` DateTime64(3, 'UTC'),
    `completed_at` DateTime64(3, 'UTC'),
    `store_counts` Map(String, Int64),
    `detail` Nullable(String),
    `request_sha256` String,
    `verified_at` DateTime64(3, 'UTC'),
    `identity_verified_by` Nullable(String)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/records/dsr_executed', '{replica}', completed_at)
ORDER BY request_id
TTL completed_at + INTERVAL 5 YEAR DELETE;

ALTER TABLE records.dsr_executed ON CLUSTER records_cluster MODIFY TTL completed_at + INTERVAL 5 YEAR DELETE;

ALTER TABLE records.dsr_executed ON CLUSTER records_cluster ADD COLUMN IF NOT EXISTS `shard_counts` Map(String, Map(String, Int64));

CREATE TABLE IF NOT EXISTS records.dsr_erasure_progress ON CLUSTER records_cluster
(
    `request_id` String,
    `store` String,
    `rows` Int64,
    `counted_at` DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/records/dsr_erasure_progress', '{replica}', counted_at)
ORDER BY (request_id, store)
TTL counted_at + INTERVAL 30 DAY DELETE;

CREATE TABLE IF NOT EXISTS records.recording_checks ON CLUSTER records_cluster
(
    `recording_id` String,
    `verdict` String,
    `checked_at` DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/records/recording_checks', '{replica}', checked_at)
ORDER BY recording_id
TTL checked_at + INTERVAL 3 MONTH DELETE;

ALTER TABLE records.dsr_executed ON CLUSTER records_cluster ADD COLUMN IF NOT EXISTS `identity_verified_by` Nullable(String);

CREATE OR REPLACE VIEW analyst.chat_conversations ON CLUSTER records_cluster AS
SELECT
    `event_id`,
    `conversation_id`,
    `channel`,
    `started_at`,
    `ended_at`,
    `message_count`,
    `job_title`,
    `company_name`,
    `app_name`,
    `app_version`,
    `user_agent`,
    `browser`,
    `os`,
    `device_type`,
    `isp_org`,
    `visit_count`,
    `chat_count`,
    `referrer_url`,
    `page_url`,
    `visit_duration_s`,
    `city`,
    `contact_consent`,
    `cookie_functional`,
    `cookie_analytics`,
    `cookie_marketing`,
    `geolocation_permission`,
    `stripped`,
    `ingested_at`,
    `expires_at`
FROM records.chat_conversations FINAL
WHERE NOT hasAny(subject_keys, (SELECT groupArray(subject_key) FROM records.subject_restrictions FINAL WHERE active));

CREATE OR REPLACE VIEW analyst.chat_messages ON CLUSTER records_cluster AS
SELECT
    `event_id`,
    `conversation_id`,
    `message_id`,
    `channel`,
    `sent_at`,
    `sender`,
    length(`text`) AS `text_length`,
    `stripped`,
    `ingested_at`,
    `expires_at`
FROM records.chat_messages FINAL
WHERE NOT hasAny(subject_keys, (SELECT groupArray(subject_key) FROM records.subject_restrictions FINAL WHERE active));

CREATE OR REPLACE VIEW analyst.calls ON CLUSTER records_cluster AS
SELECT
    `event_id`,
    `call_id`,
    `direction`,
    `service_number`,
    `started_at`,
    `answered_at`,
    `ended_at`,
    `duration_s`,
    `answered_by_number`,
    `stripped`,
    `ingested_at`,
    `expires_at`
FROM records.calls FINAL
WHERE NOT hasAny(subject_keys, (SELECT groupArray(subject_key) FROM records.subject_restrictions FINAL WHERE active));

CREATE OR REPLACE VIEW analyst.call_recordings ON CLUSTER records_cluster AS
SELECT
    `event_id`,
    `recording_id`,
    `call_id`,
    `recording_uri`,
    `notice_played_at`,
    `recording_started_at`,
    `recording_ended_at`,
    `duration_s`,
    `stripped`,
    `ingested_at`,
    `expires_at`
FROM records.call_recordings FINAL
WHERE NOT hasAny(subject_keys, (SELECT groupArray(subject_key) FROM records.subject_restrictions FINAL WHERE active))
  AND recording_id IN (SELECT recording_id FROM records.recording_checks FINAL WHERE verdict = 'within');

CREATE OR REPLACE VIEW analyst.consent_ledger ON CLUSTER records_cluster AS
SELECT
    `event_id`,
    `kind`,
    `purpose`,
    `status`,
    `channel`,
    `event_time`,
    `cookie_functional`,
    `cookie_analytics`,
    `cookie_marketing`,
    `geolocation_permission`,
    `evidence`,
    `stripped`,
    `ingested_at`,
    `expires_at`
FROM records.consent_ledger FINAL
WHERE NOT hasAny(subject_keys, (SELECT groupArray(subject_key) FROM records.subject_restrictions FINAL WHERE active));

CREATE OR REPLACE VIEW analyst.dsr_receipts ON CLUSTER records_cluster AS
SELECT
    `request_id`,
    `request_type`,
    `status`,
    `requested_at`,
    `completed_at`,
    `store_counts`,
    `detail`,
    `schema_version`,
    `shard_counts`,
    `identity_verified_by`
FROM records.dsr_receipts FINAL;

CREATE OR REPLACE VIEW analyst.contact_forms ON CLUSTER records_cluster AS
SELECT
    `event_id`,
    `submission_id`,
    `form_name`,
    `submitted_at`,
    `company_name`,
    length(`message`) AS `message_length`,
    `page_url`,
    `user_agent`,
    `contact_consent`,
    `marketing_consent`,
    `stripped`,
    `ingested_at`,
    `expires_at`
FROM records.contact_forms FINAL
WHERE NOT hasAny(subject_keys, (SELECT groupArray(subject_key) FROM records.subject_restrictions FINAL WHERE active));

CREATE ROLE IF NOT EXISTS analyst ON CLUSTER records_cluster;
CREATE ROLE IF NOT EXISTS dpo ON CLUSTER records_cluster;
CREATE ROLE IF NOT EXISTS pipeline ON CLUSTER records_cluster;
GRANT ON CLUSTER records_cluster SELECT ON analyst.* TO analyst;
GRANT ON CLUSTER records_cluster SELECT ON analyst.* TO dpo;
GRANT ON CLUSTER records_cluster SELECT, ALTER UPDATE, ALTER DELETE ON records.* TO dpo;
GRANT ON CLUSTER records_cluster SELECT, INSERT, ALTER UPDATE, ALTER DELETE, ALTER MATERIALIZE TTL, OPTIMIZE ON records.* TO pipeline;
ALTER TABLE analyst.chat_conversations ON CLUSTER records_cluster MODIFY SQL SECURITY DEFINER DEFINER = CURRENT_USER;
ALTER TABLE analyst.chat_messages ON CLUSTER records_cluster MODIFY SQL SECURITY DEFINER DEFINER = CURRENT_USER;
ALTER TABLE analyst.calls ON CLUSTER records_cluster MODIFY SQL SECURITY DEFINER DEFINER = CURRENT_USER;
ALTER TABLE analyst.call_recordings ON CLUSTER records_cluster MODIFY SQL SECURITY DEFINER DEFINER = CURRENT_USER;
ALTER TABLE analyst.consent_ledger ON CLUSTER records_cluster MODIFY SQL SECURITY DEFINER DEFINER = CURRENT_USER;
ALTER TABLE analyst.dsr_receipts ON CLUSTER records_cluster MODIFY SQL SECURITY DEFINER DEFINER = CURRENT_USER;
ALTER TABLE analyst.contact_forms ON CLUSTER records_cluster MODIFY SQL SECURITY DEFINER DEFINER = CURRENT_USER;
CREATE ROW POLICY OR REPLACE all_rows ON CLUSTER records_cluster ON records.chat_conversations, records.chat_conversations_local AS PERMISSIVE FOR SELECT USING 1 TO dpo, pipeline;
CREATE ROW POLICY OR REPLACE unrestricted_only ON CLUSTER records_cluster ON records.chat_conversations, records.chat_conversations_local AS PERMISSIVE FOR SELECT USING NOT hasAny(subject_keys, (SELECT groupArray(subject_key) FROM records.subject_restrictions FINAL WHERE active)) TO analyst;
CREATE ROW POLICY OR REPLACE all_rows ON CLUSTER records_cluster ON records.chat_messages, records.chat_messages_local AS PERMISSIVE FOR SELECT USING 1 TO dpo, pipeline;
CREATE ROW POLICY OR REPLACE unrestricted_only ON CLUSTER records_cluster ON records.chat_messages, records.chat_messages_local AS PERMISSIVE FOR SELECT USING NOT hasAny(subject_keys, (SELECT groupArray(subject_key) FROM records.subject_restrictions FINAL WHERE active)) TO analyst;
CREATE ROW POLICY OR REPLACE all_rows ON CLUSTER records_cluster ON records.calls, records.calls_local AS PERMISSIVE FOR SELECT USING 1 TO dpo, pipeline;
CREATE ROW POLICY OR REPLACE unrestricted_only ON CLUSTER records_cluster ON records.calls, records.calls_local AS PERMISSIVE FOR SELECT USING NOT hasAny(subject_keys, (SELECT groupArray(subject_key) FROM records.subject_restrictions FINAL WHERE active)) TO analyst;
CREATE ROW POLICY OR REPLACE all_rows ON CLUSTER records_cluster ON records.call_recordings, records.call_recordings_local AS PERMISSIVE FOR SELECT USING 1 TO dpo, pipeline;
CREATE ROW POLICY OR REPLACE unrestricted_only ON CLUSTER records_cluster ON records.call_recordings, records.call_recordings_local AS PERMISSIVE FOR SELECT USING NOT hasAny(subject_keys, (SELECT groupArray(subject_key) FROM records.subject_restrictions FINAL WHERE active)) TO analyst;
CREATE ROW POLICY OR REPLACE all_rows ON CLUSTER records_cluster ON records.consent_ledger, records.consent_ledger_local AS PERMISSIVE FOR SELECT USING 1 TO dpo, pipeline;
CREATE ROW POLICY OR REPLACE unrestricted_only ON CLUSTER records_cluster ON records.consent_ledger, records.consent_ledger_local AS PERMISSIVE FOR SELECT USING NOT hasAny(subject_keys, (SELECT groupArray(subject_key) FROM records.subject_restrictions FINAL WHERE active)) TO analyst;
CREATE ROW POLICY OR REPLACE all_rows ON CLUSTER records_cluster ON records.contact_forms, records.contact_forms_local AS PERMISSIVE FOR SELECT USING 1 TO dpo, pipeline;
CREATE ROW POLICY OR REPLACE unrestricted_only ON CLUSTER records_cluster ON records.contact_forms, records.contact_forms_local AS PERMISSIVE FOR SELECT USING NOT hasAny(subject_keys, (SELECT groupArray(subject_key) FROM records.subject_restrictions FINAL WHERE active)) TO analyst;
