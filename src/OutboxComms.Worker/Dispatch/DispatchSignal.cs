namespace OutboxComms.Worker.Dispatch;

/// <summary>Wakes the dispatch loop: set by NOTIFY, remembered until the loop next waits.</summary>
internal sealed class DispatchSignal : IDisposable
{
    private readonly SemaphoreSlim signal = new(0, 1);

    public void Notify()
    {
        try
        {
            signal.Release();
        }
        catch (SemaphoreFullException)
        {
            // Already set; one wake-up is as good as many.
        }
    }

    /// <summary>True when notified, false when the timeout passed.</summary>
    public Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken) => signal.WaitAsync(timeout, cancellationToken);

    public void Dispose() => signal.Dispose();
}
