ALTER TABLE records.chat_conversations_local ON CLUSTER records_cluster DELETE WHERE hasAny(subject_keys, ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb']) AND ((hasAny(subject_keys, ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb']) AND `ingested_at` <= toDateTime64('2026-11-02 09:30:00.000', 3, 'UTC'))) SETTINGS mutations_sync = 2;

ALTER TABLE records.chat_messages_local ON CLUSTER records_cluster DELETE WHERE hasAny(subject_keys, ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb']) AND ((hasAny(subject_keys, ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb']) AND `ingested_at` <= toDateTime64('2026-11-02 09:30:00.000', 3, 'UTC'))) SETTINGS mutations_sync = 2;

ALTER TABLE records.calls_local ON CLUSTER records_cluster DELETE WHERE hasAny(subject_keys, ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb']) AND ((hasAny(subject_keys, ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb']) AND `ingested_at` <= toDateTime64('2026-11-02 09:30:00.000', 3, 'UTC'))) SETTINGS mutations_sync = 2;

ALTER TABLE records.call_recordings_local ON CLUSTER records_cluster DELETE WHERE hasAny(subject_keys, ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb']) AND ((hasAny(subject_keys, ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb']) AND `ingested_at` <= toDateTime64('2026-11-02 09:30:00.000', 3, 'UTC'))) SETTINGS mutations_sync = 2;

ALTER TABLE records.consent_ledger_local ON CLUSTER records_cluster DELETE WHERE hasAny(subject_keys, ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb']) AND ((hasAny(subject_keys, ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb']) AND `ingested_at` <= toDateTime64('2026-11-02 09:30:00.000', 3, 'UTC'))) SETTINGS mutations_sync = 2;

ALTER TABLE records.contact_forms_local ON CLUSTER records_cluster DELETE WHERE hasAny(subject_keys, ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb']) AND ((hasAny(subject_keys, ['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb']) AND `ingested_at` <= toDateTime64('2026-11-02 09:30:00.000', 3, 'UTC'))) SETTINGS mutations_sync = 2;

ALTER TABLE records.subject_restrictions DELETE WHERE subject_key IN ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb') SETTINGS mutations_sync = 2;

ALTER TABLE records.chat_conversations_local ON CLUSTER records_cluster
UPDATE `name` = if(event_id IN ['evt-1', 'evt-2'] AND channel IN ('WEB'), NULL, `name`), `email` = if(event_id IN ['evt-1', 'evt-2'] AND channel IN ('WEB'), NULL, `email`), `phone` = if(event_id IN ['evt-1', 'evt-2'] AND channel IN ('WEB'), NULL, `phone`), `job_title` = if(event_id IN ['evt-1', 'evt-2'] AND channel IN ('WEB'), NULL, `job_title`), `company_name` = if(event_id IN ['evt-1', 'evt-2'] AND channel IN ('WEB'), NULL, `company_name`), `isp_org` = if(event_id IN ['evt-1', 'evt-2'], NULL, `isp_org`), `visit_count` = if(event_id IN ['evt-1', 'evt-2'], NULL, `visit_count`), `chat_count` = if(event_id IN ['evt-1', 'evt-2'], NULL, `chat_count`), `referrer_url` = if(event_id IN ['evt-1', 'evt-2'], NULL, `referrer_url`), `page_url` = if(event_id IN ['evt-1', 'evt-2'], NULL, `page_url`), `visit_duration_s` = if(event_id IN ['evt-1', 'evt-2'], NULL, `visit_duration_s`), `city` = if(event_id IN ['evt-1', 'evt-2'], NULL, `city`), `browser` = if(event_id IN ['evt-1', 'evt-2'], NULL, `browser`), `os` = if(event_id IN ['evt-1', 'evt-2'], NULL, `os`), `device_type` = if(event_id IN ['evt-1', 'evt-2'], NULL, `device_type`), `latitude` = if(event_id IN ['evt-1', 'evt-2'], NULL, `latitude`), `longitude` = if(event_id IN ['evt-1', 'evt-2'], NULL, `longitude`), stripped = arrayConcat(stripped, arrayFilter(x -> x != '', [if(event_id IN ['evt-1', 'evt-2'] AND channel IN ('WEB') AND `name` IS NOT NULL, 'name:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND channel IN ('WEB') AND `email` IS NOT NULL, 'email:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND channel IN ('WEB') AND `phone` IS NOT NULL, 'phone:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND channel IN ('WEB') AND `job_title` IS NOT NULL, 'job_title:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND channel IN ('WEB') AND `company_name` IS NOT NULL, 'company_name:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND `isp_org` IS NOT NULL, 'isp_org:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND `visit_count` IS NOT NULL, 'visit_count:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND `chat_count` IS NOT NULL, 'chat_count:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND `referrer_url` IS NOT NULL, 'referrer_url:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND `page_url` IS NOT NULL, 'page_url:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND `visit_duration_s` IS NOT NULL, 'visit_duration_s:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND `city` IS NOT NULL, 'city:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND `browser` IS NOT NULL, 'browser:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND `os` IS NOT NULL, 'os:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND `device_type` IS NOT NULL, 'device_type:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND `latitude` IS NOT NULL, 'latitude:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND `longitude` IS NOT NULL, 'longitude:consent_withdrawn', '')]))
WHERE event_id IN ['evt-1', 'evt-2'] SETTINGS mutations_sync = 2;

ALTER TABLE records.contact_forms_local ON CLUSTER records_cluster
UPDATE `name` = if(event_id IN ['evt-1', 'evt-2'], NULL, `name`), `email` = if(event_id IN ['evt-1', 'evt-2'], NULL, `email`), `phone` = if(event_id IN ['evt-1', 'evt-2'], NULL, `phone`), `company_name` = if(event_id IN ['evt-1', 'evt-2'], NULL, `company_name`), stripped = arrayConcat(stripped, arrayFilter(x -> x != '', [if(event_id IN ['evt-1', 'evt-2'] AND `name` IS NOT NULL, 'name:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND `email` IS NOT NULL, 'email:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND `phone` IS NOT NULL, 'phone:consent_withdrawn', ''), if(event_id IN ['evt-1', 'evt-2'] AND `company_name` IS NOT NULL, 'company_name:consent_withdrawn', '')]))
WHERE event_id IN ['evt-1', 'evt-2'] SETTINGS mutations_sync = 2;

ALTER TABLE records.chat_conversations_local ON CLUSTER records_cluster DROP PARTITION ID '202401', DROP PARTITION ID '202402' SETTINGS alter_sync = 2;

ALTER TABLE records.chat_conversations_local ON CLUSTER records_cluster DELETE WHERE (`started_at` + INTERVAL 180 DAY) < fromUnixTimestamp64Milli(toInt64(1796018400000), 'UTC') SETTINGS mutations_sync = 2;

ALTER TABLE records.chat_messages_local ON CLUSTER records_cluster DROP PARTITION ID '202401', DROP PARTITION ID '202402' SETTINGS alter_sync = 2;

ALTER TABLE records.chat_messages_local ON CLUSTER records_cluster DELETE WHERE (`sent_at` + INTERVAL 180 DAY) < fromUnixTimestamp64Milli(toInt64(1796018400000), 'UTC') SETTINGS mutations_sync = 2;

ALTER TABLE records.calls_local ON CLUSTER records_cluster DROP PARTITION ID '202401', DROP PARTITION ID '202402' SETTINGS alter_sync = 2;

ALTER TABLE records.calls_local ON CLUSTER records_cluster DELETE WHERE (`started_at` + INTERVAL 2 YEAR) < fromUnixTimestamp64Milli(toInt64(1796018400000), 'UTC') SETTINGS mutations_sync = 2;

ALTER TABLE records.call_recordings_local ON CLUSTER records_cluster DROP PARTITION ID '202401', DROP PARTITION ID '202402' SETTINGS alter_sync = 2;

ALTER TABLE records.call_recordings_local ON CLUSTER records_cluster DELETE WHERE (`recording_started_at` + INTERVAL 3 MONTH) < fromUnixTimestamp64Milli(toInt64(1796018400000), 'UTC') SETTINGS mutations_sync = 2;

ALTER TABLE records.consent_ledger_local ON CLUSTER records_cluster DROP PARTITION ID '202401', DROP PARTITION ID '202402' SETTINGS alter_sync = 2;

ALTER TABLE records.consent_ledger_local ON CLUSTER records_cluster DELETE WHERE (`event_time` + INTERVAL 2 YEAR) < fromUnixTimestamp64Milli(toInt64(1796018400000), 'UTC') SETTINGS mutations_sync = 2;

ALTER TABLE records.dsr_receipts_local ON CLUSTER records_cluster DROP PARTITION ID '202401', DROP PARTITION ID '202402' SETTINGS alter_sync = 2;

ALTER TABLE records.dsr_receipts_local ON CLUSTER records_cluster DELETE WHERE (`completed_at` + INTERVAL 5 YEAR) < fromUnixTimestamp64Milli(toInt64(1796018400000), 'UTC') SETTINGS mutations_sync = 2;

ALTER TABLE records.contact_forms_local ON CLUSTER records_cluster DROP PARTITION ID '202401', DROP PARTITION ID '202402' SETTINGS alter_sync = 2;

ALTER TABLE records.contact_forms_local ON CLUSTER records_cluster DELETE WHERE (`submitted_at` + INTERVAL 180 DAY) < fromUnixTimestamp64Milli(toInt64(1796018400000), 'UTC') SETTINGS mutations_sync = 2;

