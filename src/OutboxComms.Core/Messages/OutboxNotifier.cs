using Npgsql;

namespace OutboxComms.Core.Messages;

/// <summary>
/// Wakes the workers after messages were committed, outside the inserting transaction, and
/// coalesces: however many requests commit meanwhile, at most one NOTIFY is in flight and one more
/// follows it. Used by writers that defer the trigger's notification (see migration 0008 and
/// <c>AddOutboxDatabase(deferInsertNotifications: true)</c>), so their
/// commits never queue on PostgreSQL's notification lock. A notification lost to a crash costs at
/// most one worker poll interval.
/// </summary>
public sealed partial class OutboxNotifier(NpgsqlDataSource dataSource, Microsoft.Extensions.Logging.ILogger<OutboxNotifier> logger)
{
    // Capacity one, extra requests dropped: while a NOTIFY is being sent, any number of commits
    // add up to exactly one more.
    private readonly System.Threading.Channels.Channel<bool> requests = System.Threading.Channels.Channel.CreateBounded<bool>(
        new System.Threading.Channels.BoundedChannelOptions(1) { FullMode = System.Threading.Channels.BoundedChannelFullMode.DropWrite, SingleReader = true });
    private int started;

    public void Notify()
    {
        requests.Writer.TryWrite(true);
        if (Interlocked.Exchange(ref started, 1) == 0)
        {
            _ = Task.Run(SendLoopAsync);
        }
    }

    private async Task SendLoopAsync()
    {
        await foreach (var _ in requests.Reader.ReadAllAsync())
        {
            try
            {
                await using var command = dataSource.CreateCommand("SELECT pg_notify('outbox_pending', '')");
                await command.ExecuteNonQueryAsync();
            }
            catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException or TimeoutException)
            {
                LogFailed(logger, ex);
            }
        }
    }

    [Microsoft.Extensions.Logging.LoggerMessage(Level = Microsoft.Extensions.Logging.LogLevel.Warning, Message = "Waking workers failed; they will find the messages on their next poll")]
    private static partial void LogFailed(Microsoft.Extensions.Logging.ILogger logger, Exception exception);
}
