using Microsoft.Extensions.Options;
using Npgsql;
using OutboxComms.Core.Providers;

namespace OutboxComms.Worker.Maintenance;

/// <summary>
/// Hourly, in batches of 1,000 (safe in every worker at once): deletes the files of messages that
/// stopped being PENDING more than <see cref="AttachmentOptions.RetentionDays"/> ago. Oldest
/// attachments first; each is matched to its message by company and id (the outbox's key), and one
/// whose message is gone (a producer's own delete) goes too.
/// </summary>
internal sealed partial class AttachmentRetention(NpgsqlDataSource dataSource, IOptions<AttachmentOptions> options, TimeProvider time, ILogger<AttachmentRetention> logger) : BackgroundService
{
    private const int Batch = 1000;

    // A file written before migration 0031 without a company (an id two companies share) is left.
    private const string DeleteSql = """
        DELETE FROM communication_attachments WHERE id IN (
            SELECT a.id FROM communication_attachments a
             WHERE a.company_id IS NOT NULL
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

    [LoggerMessage(Level = LogLevel.Information, Message = "Deleted {Count} attachments of messages settled more than {Days} days ago")]
    private static partial void LogPurged(ILogger logger, long count, int days);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Deleting old attachments failed; will try again in an hour")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
