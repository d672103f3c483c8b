using Microsoft.Extensions.Options;
using Npgsql;
using OutboxComms.Core.Providers;

namespace OutboxComms.Worker.Maintenance;

/// <summary>
/// Hourly, in batches of 1,000 (safe in every worker at once): clears the bytes and links of the
/// files of messages that stopped being PENDING more than <see cref="AttachmentOptions.RetentionDays"/>
/// ago, stamping purged_at (the row stays, so a later replay of the message fails with that reason
/// rather than going out without its file). Oldest attachments first; each is matched to its
/// message by company and id (the outbox's key), and one whose message is gone is cleared too.
/// </summary>
internal sealed partial class AttachmentRetention(NpgsqlDataSource dataSource, IOptions<AttachmentOptions> options, TimeProvider time, ILogger<AttachmentRetention> logger) : BackgroundService
{
    private const int Batch = 1000;

    // A file written before migration 0031 without a company (an id two companies share) is left.
    private const string DeleteSql = """
        UPDATE communication_attachments SET content = NULL, url = NULL, purged_at = now() WHERE id IN (
            SELECT a.id FROM communication_attachments a
             WHERE a.purged_at IS NULL AND a.company_id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM communication_logs m
                                WHERE m.company_id = a.company_id AND m.id = a.message_id AND (m.status = 'PENDING' OR m.updated_at >= $1))
             ORDER BY a.id LIMIT 1000 FOR UPDATE SKIP LOCKED)
        """;

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        options.Value.RetentionDays == 0 ? Task.CompletedTask : PeriodicTimers.EveryAsync(TimeSpan.FromHours(1), time, async cancellationToken =>
        {
            if (await PurgeAsync(cancellationToken) is > 0 and var deleted)
            {
                LogPurged(logger, deleted, options.Value.RetentionDays);
            }
        }, ex => LogFailed(logger, ex), stoppingToken);

    public async Task<long> PurgeAsync(CancellationToken cancellationToken) =>
        options.Value.RetentionDays == 0 ? 0
            : await PeriodicTimers.PurgeInBatchesAsync(dataSource, DeleteSql, time.GetUtcNow().AddDays(-options.Value.RetentionDays), Batch, cancellationToken);

    [LoggerMessage(Level = LogLevel.Information, Message = "Cleared {Count} attachments of messages settled more than {Days} days ago")]
    private static partial void LogPurged(ILogger logger, long count, int days);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Deleting old attachments failed; will try again in an hour")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
