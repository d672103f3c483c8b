-- MessageBird signs its SMS delivery reports (GET /webhooks/messagebird-sms/{companyId}) with the
-- account's signing key, which the SMS settings had nowhere to keep. Encrypted like every other
-- secret column (AES-256-GCM with a key id; re-encrypted by `rotate-secrets`).
ALTER TABLE company_settings ADD COLUMN sms_webhook_secret_encrypted bytea;
