using Microsoft.Extensions.Options;
using Npgsql;
using OutboxComms.Core.Webhooks;

namespace OutboxComms.Worker.Maintenance;

/// <summary>
/// Hourly retention, in small batches so it never holds long locks (safe in every worker at once):
/// raw webhook events older than <see cref="WebhookOptions.RetentionDays"/>, and API idempotency
/// keys older than <c>Api:IdempotencyKeyRetentionDays</c> (default 30; a client retrying after
/// that gets a new message), and webhook signature nonces once their signatures are stale.
/// </summary>
internal sealed partial class WebhookEventRetention(NpgsqlDataSource dataSource, IOptions<WebhookOptions> options, IOptions<KeyRetentionOptions> keys, TimeProvider time, ILogger<WebhookEventRetention> logger) : BackgroundService
{
    private const string DeleteSql = """
        DELETE FROM webhook_events WHERE id IN (
            SELECT id FROM webhook_events WHERE received_at < $1 ORDER BY received_at LIMIT 5000 FOR UPDATE SKIP LOCKED)
        """;

    // The partial index of unmatched events by arrival (0027).
    private const string DeleteUnmatchedSql = """
        DELETE FROM webhook_events WHERE id IN (
            SELECT id FROM webhook_events WHERE outcome = 'UNKNOWN_MESSAGE' AND received_at < $1 ORDER BY received_at LIMIT 5000 FOR UPDATE SKIP LOCKED)
        """;

    private const string DeleteKeysSql = """
        DELETE FROM idempotency_keys WHERE (company_id, key) IN (
            SELECT company_id, key FROM idempotency_keys WHERE created_at < $1 ORDER BY created_at LIMIT 5000 FOR UPDATE SKIP LOCKED)
        """;

    private const string DeleteNoncesSql = """
        DELETE FROM webhook_nonces WHERE (company_id, provider, nonce) IN (
            SELECT company_id, provider, nonce FROM webhook_nonces WHERE seen_at < $1 ORDER BY seen_at LIMIT 5000 FOR UPDATE SKIP LOCKED)
        """;

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        PeriodicTimers.EveryAsync(TimeSpan.FromHours(1), time, async cancellationToken =>
        {
            await PurgeAsync(DeleteKeysSql, time.GetUtcNow().AddDays(-keys.Value.IdempotencyKeyRetentionDays), cancellationToken);
            await PurgeNoncesAsync(cancellationToken);
            await PurgeUnmatchedAsync(cancellationToken);
            var deleted = await PurgeAsync(cancellationToken);
            if (deleted > 0)
            {
                LogPurged(logger, deleted, options.Value.RetentionDays);
            }
        }, ex => LogFailed(logger, ex), stoppingToken);

    public Task<long> PurgeAsync(CancellationToken cancellationToken) =>
        PurgeAsync(DeleteSql, time.GetUtcNow().AddDays(-options.Value.RetentionDays), cancellationToken);

    /// <summary>Events that matched no message, older than <see cref="WebhookOptions.UnmatchedRetentionHours"/>.</summary>
    public Task<long> PurgeUnmatchedAsync(CancellationToken cancellationToken) =>
        PurgeAsync(DeleteUnmatchedSql, time.GetUtcNow().AddHours(-options.Value.UnmatchedRetentionHours), cancellationToken);

    /// <summary>Webhook signature nonces older than <see cref="WebhookNonces.Retention"/>: their signatures are refused as stale anyway.</summary>
    public Task<long> PurgeNoncesAsync(CancellationToken cancellationToken) =>
        PurgeAsync(DeleteNoncesSql, time.GetUtcNow() - WebhookNonces.Retention, cancellationToken);

    private Task<long> PurgeAsync(string sql, DateTimeOffset cutoff, CancellationToken cancellationToken) =>
        PeriodicTimers.PurgeInBatchesAsync(dataSource, sql, cutoff, 5000, cancellationToken);

    [LoggerMessage(Level = LogLevel.Information, Message = "Deleted {Count} webhook events older than {Days} days")]
    private static partial void LogPurged(ILogger logger, long count, int days);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Purging old webhook events failed; will try again in an hour")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
