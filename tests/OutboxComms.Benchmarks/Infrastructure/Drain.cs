using System.Diagnostics;
using System.Text;

namespace OutboxComms.Benchmarks.Infrastructure;

/// <summary>What the workers did to the outbox since a given instant.</summary>
internal sealed record DrainResult(long Processed, long Sent, DateTimeOffset? Last, DateTimeOffset? P10, DateTimeOffset? P90, string Problems)
{
    /// <summary>Rows per second between the 10th and 90th percentile of completion times: startup and tail excluded.</summary>
    public double SteadyRate => P10 is { } p10 && P90 is { } p90 && p90 > p10 ? 0.8 * Processed / (p90 - p10).TotalSeconds : double.NaN;
}

/// <summary>Waiting for workers to empty the outbox, and reading what they recorded.</summary>
internal static class Drain
{
    /// <summary>
    /// Polls (every 500 ms; the end time comes from the recorded completions, not from this) until
    /// no PENDING row is due or held by a worker. Claimed rows carry next_attempt_at = lease end
    /// (two minutes ahead), so "due within ten minutes" covers both; rows a policy deferred for
    /// hours do not count. Not free: the probe wades through the index entries that completed rows
    /// left behind until vacuum, as the claim does, so it is kept rare.
    /// </summary>
    // The first due row in the due index's order: an index range scan. As an EXISTS without the
    // order, the planner chose a parallel seq scan under a large backlog (1.1 s on both cores,
    // stealing from the workers being measured).
    private const string ProbeSql = """
        SELECT (SELECT id FROM communication_logs
                 WHERE status = 'PENDING' AND next_attempt_at <= now() + interval '10 minutes'
                 ORDER BY next_attempt_at, id LIMIT 1) IS NOT NULL
        """;

    public static async Task<bool> WaitAsync(BenchDatabase db, TimeSpan timeout, WorkerFleet? fleet = null)
    {
        var started = Stopwatch.GetTimestamp();
        while (Stopwatch.GetElapsedTime(started) < timeout)
        {
            if (!await db.ScalarAsync<bool>(ProbeSql))
            {
                return true;
            }
            fleet?.ThrowIfExited();
            await Task.Delay(500);
        }
        return false;
    }

    /// <summary>Rows the workers touched (updated_at is set when a batch's outcomes are recorded) since <paramref name="since"/>.</summary>
    public static async Task<DrainResult> ResultAsync(BenchDatabase db, DateTimeOffset since)
    {
        long processed, sent;
        DateTimeOffset? last, p10, p90;
        await using (var command = db.DataSource.CreateCommand("""
            SELECT count(*), count(*) FILTER (WHERE status = 'SENT'), max(updated_at),
                   percentile_disc(0.1) WITHIN GROUP (ORDER BY updated_at), percentile_disc(0.9) WITHIN GROUP (ORDER BY updated_at)
              FROM communication_logs WHERE updated_at >= $1
            """))
        {
            command.Parameters.AddWithValue(since.ToUniversalTime());
            await using var reader = await command.ExecuteReaderAsync();
            await reader.ReadAsync();
            processed = reader.GetInt64(0);
            sent = reader.GetInt64(1);
            last = reader.IsDBNull(2) ? null : reader.GetFieldValue<DateTimeOffset>(2);
            p10 = reader.IsDBNull(3) ? null : reader.GetFieldValue<DateTimeOffset>(3);
            p90 = reader.IsDBNull(4) ? null : reader.GetFieldValue<DateTimeOffset>(4);
        }

        // Anything but SENT is worth a look: a deferral by design, or a setup mistake.
        var problems = new StringBuilder();
        await using (var command = db.DataSource.CreateCommand("""
            SELECT status, left(coalesce(error_message, status_reason, ''), 100), count(*)
              FROM communication_logs WHERE updated_at >= $1 AND status <> 'SENT'
             GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 4
            """))
        {
            command.Parameters.AddWithValue(since.ToUniversalTime());
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                problems.Append(problems.Length == 0 ? "" : "; ").Append($"{Stats.Count(reader.GetInt64(2))} {reader.GetString(0)} ({reader.GetString(1)})");
            }
        }
        return new DrainResult(processed, sent, last, p10, p90, problems.ToString());
    }
}
