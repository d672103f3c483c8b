"""SQL of the three claim designs. Every design has claim(token, lease_end, now, limit),
complete(now, token, 18 arrays) and attempts(9 arrays). Outcome + attempts run in one transaction."""

COLS = """m.id, m.company_id, m.customer_id, m.customer_external_id, m.type, m.channel, m.requested_channel,
          m.subject, m.content, m.template_key, m.template_data::text, m.retry_count, m.max_retries,
          m.attempt_count, m.expires_at, m.created_at"""

# (A) current: copied from OutboxStore.ClaimSql / CompleteSql / AttemptsSql.
CLAIM_A = """
WITH claimed AS (
    UPDATE communication_logs m
       SET locked_by = $1, locked_until = $2, next_attempt_at = $2
      FROM (SELECT id, next_attempt_at FROM communication_logs
             WHERE status = 'PENDING' AND next_attempt_at <= $3
             ORDER BY next_attempt_at, id
             LIMIT $4
             FOR UPDATE SKIP LOCKED) due
     WHERE m.id = due.id
    RETURNING m.id, m.company_id, m.customer_id, m.customer_external_id, m.type, m.channel, m.requested_channel,
              m.subject, m.content, m.template_key, m.template_data::text, m.retry_count, m.max_retries,
              m.attempt_count, m.expires_at, m.created_at, due.next_attempt_at AS due_at)
SELECT * FROM claimed ORDER BY due_at, id
"""

UNNEST = """unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::int[], $9::int[],
              $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
              $17::timestamptz[], $18::timestamptz[], $19::numeric[], $20::text[])
       AS u(id, status, channel, requested_channel, next_attempt_at, retry_count, attempt_count,
            status_reason, error_message, subject, content, template_used, provider_name, provider_message_id,
            sent_at, failed_at, cost, cost_currency)"""

SET_OUTCOME = """status = u.status, channel = u.channel,
       requested_channel = coalesce(u.requested_channel, m.requested_channel),
       next_attempt_at = u.next_attempt_at, retry_count = u.retry_count, attempt_count = u.attempt_count,
       status_reason = u.status_reason, error_message = u.error_message,
       subject = coalesce(u.subject, m.subject), content = coalesce(u.content, m.content),
       template_used = coalesce(u.template_used, m.template_used),
       provider_name = coalesce(u.provider_name, m.provider_name),
       provider_message_id = coalesce(u.provider_message_id, m.provider_message_id),
       sent_at = coalesce(u.sent_at, m.sent_at), failed_at = coalesce(u.failed_at, m.failed_at),
       cost = coalesce(u.cost, m.cost), cost_currency = coalesce(u.cost_currency, m.cost_currency)"""

COMPLETE_A = f"""
UPDATE communication_logs m SET
       {SET_OUTCOME},
       locked_by = NULL, locked_until = NULL, updated_at = $1
  FROM {UNNEST}
 WHERE m.id = u.id AND m.locked_by = $2
"""

ATTEMPTS = """
INSERT INTO communication_attempts (message_id, company_id, attempt_no, attempted_at, channel, provider_name, outcome, error_message, provider_latency_ms)
SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::int[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int[])
"""

# (B) narrow lease table; the wide row is only row-locked (SKIP LOCKED) at claim time, not updated.
CLAIM_B = f"""
WITH due AS (
    SELECT {COLS}, m.next_attempt_at AS due_at
      FROM communication_logs m
     WHERE m.status = 'PENDING' AND m.next_attempt_at <= $3
       AND NOT EXISTS (SELECT 1 FROM communication_leases l WHERE l.message_id = m.id AND l.locked_until > $3)
     ORDER BY m.next_attempt_at, m.id
     LIMIT $4
     FOR UPDATE OF m SKIP LOCKED),
leased AS (
    INSERT INTO communication_leases AS l (message_id, locked_by, locked_until)
    SELECT id, $1, $2 FROM due
    ON CONFLICT (message_id) DO UPDATE SET locked_by = excluded.locked_by, locked_until = excluded.locked_until
     WHERE l.locked_until <= $3
    RETURNING l.message_id)
SELECT due.* FROM leased JOIN due ON due.id = leased.message_id
 ORDER BY due.due_at, due.id
"""

COMPLETE_B = f"""
WITH released AS (
    DELETE FROM communication_leases l
     WHERE l.message_id = ANY($3::bigint[]) AND l.locked_by = $2
    RETURNING l.message_id)
UPDATE communication_logs m SET
       {SET_OUTCOME},
       updated_at = $1
  FROM {UNNEST}, released r
 WHERE m.id = u.id AND r.message_id = u.id
"""

# (C) HOT-friendly: only the lease columns change; in-flight rows stay in the due range and are skipped by their lease.
CLAIM_C = (CLAIM_A
           .replace("SET locked_by = $1, locked_until = $2, next_attempt_at = $2", "SET locked_by = $1, locked_until = $2")
           .replace("WHERE status = 'PENDING' AND next_attempt_at <= $3",
                    "WHERE status = 'PENDING' AND next_attempt_at <= $3\n               AND (locked_until IS NULL OR locked_until < $3)"))
assert CLAIM_C != CLAIM_A and "next_attempt_at = $2" not in CLAIM_C

COMPLETE_PARAMS = ("timestamptz, text, bigint[], text[], text[], text[], timestamptz[], int[], int[], text[], text[], "
                   "text[], text[], text[], text[], text[], timestamptz[], timestamptz[], numeric[], text[], uuid[]")

# (P) production as of 2026-12-02: claim by ctid, outcome probing (company_id, id) and updating by ctid.
CLAIM_P = """
WITH due AS MATERIALIZED (
    SELECT ctid, id, next_attempt_at FROM communication_logs
     WHERE status = 'PENDING' AND next_attempt_at <= $3
     ORDER BY next_attempt_at, id
     LIMIT $4
     FOR UPDATE SKIP LOCKED),
claimed AS (
    UPDATE communication_logs m
       SET locked_by = $1, locked_until = $2, next_attempt_at = $2
     WHERE m.ctid = ANY (ARRAY(SELECT ctid FROM due))
    RETURNING m.id, m.company_id, m.customer_id, m.customer_external_id, m.type, m.channel, m.requested_channel,
              m.subject, m.content, m.template_key, m.template_data::text, m.retry_count, m.max_retries,
              m.attempt_count, m.expires_at, m.created_at)
SELECT claimed.*, due.next_attempt_at FROM claimed JOIN due USING (id) ORDER BY due.next_attempt_at, claimed.id
"""
UNNEST_P = UNNEST.replace("unnest($3::bigint[], ", "unnest($3::bigint[], $21::uuid[], ").replace("AS u(id, ", "AS u(id, company_id, ")
assert UNNEST_P != UNNEST
COMPLETE_P = f"""
UPDATE communication_logs m SET
       {SET_OUTCOME},
       locked_by = NULL, locked_until = NULL, updated_at = $1
  FROM {UNNEST_P}
 CROSS JOIN LATERAL (SELECT ctid AS tid FROM communication_logs
                      WHERE company_id = u.company_id AND id = u.id AND locked_by = $2
                        FOR NO KEY UPDATE) l
 WHERE m.ctid = l.tid
"""
CLAIM_PARAMS = "text, timestamptz, timestamptz, int"

# (L) added 2026-12-07 (twentieth session): the claim writes nothing. Each due row is taken with a
# session-level advisory lock on its id (pg_try_advisory_lock, evaluated row by row as the ordered
# scan of the due index produces them, so only returned rows and rows another session holds are
# tried); the outcome is the row's only new version. A claim whose snapshot predates another
# session's outcome commit and unlock could take a row just sent: the claimed ids are read again
# (a new snapshot) and only those still PENDING are kept. The locks are released after the
# outcome's commit. Rows in flight stay in the due range and every claim steps past them.
CLAIM_L = """
SELECT m.id, m.company_id, m.customer_id, m.customer_external_id, m.type, m.channel, m.requested_channel,
       m.subject, m.content, m.template_key, m.template_data::text, m.retry_count, m.max_retries,
       m.attempt_count, m.expires_at, m.created_at, m.next_attempt_at AS due_at
  FROM communication_logs m
 WHERE m.status = 'PENDING' AND m.next_attempt_at <= $3 AND $1 IS NOT NULL AND $2 IS NOT NULL
   AND pg_try_advisory_lock(m.id)
 ORDER BY m.next_attempt_at, m.id
 LIMIT $4
"""
RECHECK_L = """
SELECT m.id FROM communication_logs m
  JOIN unnest($1::uuid[], $2::bigint[]) AS c(company_id, id) ON m.company_id = c.company_id AND m.id = c.id
 WHERE m.status = 'PENDING'
"""
COMPLETE_L = f"""
UPDATE communication_logs m SET
       {SET_OUTCOME},
       updated_at = $1
  FROM {UNNEST_P}
 WHERE m.company_id = u.company_id AND m.id = u.id AND m.status = 'PENDING' AND $2 IS NOT NULL
"""
ATTEMPT_PARAMS = "bigint[], uuid[], int[], timestamptz[], text[], text[], text[], text[], int[]"

DESIGNS = {
    "A": dict(claim=CLAIM_A, complete=COMPLETE_A, ff=85),
    "P": dict(claim=CLAIM_P, complete=COMPLETE_P, ff=85),
    "B": dict(claim=CLAIM_B, complete=COMPLETE_B, ff=85),
    "C85": dict(claim=CLAIM_C, complete=COMPLETE_A, ff=85),
    "C60": dict(claim=CLAIM_C, complete=COMPLETE_A, ff=60),
    "L": dict(claim=CLAIM_L, complete=COMPLETE_L, ff=85, recheck=RECHECK_L),
}


def prepare(cur, design):
    d = DESIGNS[design]
    # Custom plans every execution, as Npgsql's unprepared statements get in production: generic
    # plans are pathological here (A's claim: seq scan + hash join; B's outcome: nested loop that
    # rescans unnest() 500 times). PREPARE still saves parse/analyze; planning (~0.5 ms per
    # statement, ~1 us/msg each) is included in the CPU numbers but not in pg_stat_statements.
    cur.execute("SET plan_cache_mode = force_custom_plan")
    cur.execute(f"PREPARE claim({CLAIM_PARAMS}) AS {d['claim']}")
    cur.execute(f"PREPARE complete({COMPLETE_PARAMS}) AS {d['complete']}")
    cur.execute(f"PREPARE attempts({ATTEMPT_PARAMS}) AS {ATTEMPTS}")
    if "recheck" in d:
        cur.execute(f"PREPARE recheck(uuid[], bigint[]) AS {d['recheck']}")
