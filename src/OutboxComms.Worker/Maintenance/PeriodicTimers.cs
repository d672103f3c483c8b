namespace OutboxComms.Worker.Maintenance;

internal static class PeriodicTimers
{
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
