namespace OutboxComms.Worker.Maintenance;

internal static class PeriodicTimers
{
    /// <summary>
    /// Runs <paramref name="work"/> now and then every <paramref name="period"/> until the host
    /// stops; a failure is handed to <paramref name="failed"/> (to log) and the next tick tries again.
    /// </summary>
    public static async Task EveryAsync(TimeSpan period, TimeProvider time, Func<CancellationToken, Task> work, Action<Exception> failed, CancellationToken stoppingToken)
    {
        ArgumentNullException.ThrowIfNull(work);
        ArgumentNullException.ThrowIfNull(failed);
        using var timer = new PeriodicTimer(period, time);
        do
        {
            try
            {
                await work(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                failed(ex);
            }
        }
        while (await timer.TickAsync(stoppingToken));
    }

    /// <summary>Runs a batched DELETE taking a cutoff ($1) until a batch deletes fewer than <paramref name="batch"/> rows; answers the total.</summary>
    public static async Task<long> PurgeInBatchesAsync(Npgsql.NpgsqlDataSource dataSource, string sql, DateTimeOffset cutoff, int batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        long total = 0;
        while (true)
        {
            await using var command = dataSource.CreateCommand(sql);
            command.Parameters.Add(new Npgsql.NpgsqlParameter<DateTimeOffset> { TypedValue = cutoff.ToUniversalTime() });
            var deleted = await command.ExecuteNonQueryAsync(cancellationToken);
            total += deleted;
            if (deleted < batch)
            {
                return total;
            }
        }
    }

    /// <summary>Waits for the timer's next tick; false once the host is stopping.</summary>
    public static async Task<bool> TickAsync(this PeriodicTimer timer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(timer);
        try
        {
            return await timer.WaitForNextTickAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
