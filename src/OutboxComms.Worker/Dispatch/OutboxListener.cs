using Npgsql;

namespace OutboxComms.Worker.Dispatch;

/// <summary>
/// Holds a connection that LISTENs on <c>outbox_pending</c> (sent by the insert trigger) and wakes
/// the dispatch loop. A dropped connection loses notifications, so the loop also polls; after a
/// reconnect we wake it once in case something arrived meanwhile.
/// </summary>
internal sealed class OutboxListener(NpgsqlDataSource dataSource, DispatchSignal signal, ILogger<OutboxListener> logger) : BackgroundService
{
    public const string ChannelName = "outbox_pending";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var connection = await dataSource.OpenConnectionAsync(stoppingToken);
                connection.Notification += (_, _) => signal.Notify();
                await using (var listen = new NpgsqlCommand($"LISTEN {ChannelName}", connection))
                {
                    await listen.ExecuteNonQueryAsync(stoppingToken);
                }
                signal.Notify();
                while (!stoppingToken.IsCancellationRequested)
                {
                    await connection.WaitAsync(stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                DispatchLog.ListenFailed(logger, ex);
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }
}
