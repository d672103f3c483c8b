namespace OutboxComms.Worker.Dispatch;

/// <summary>
/// A message whose provider call was not made and must not be made under this lease: its row is
/// given back unsent, due at once, without spending a retry or recording an attempt.
/// </summary>
public sealed class SendNotStartedException : Exception
{
    /// <summary>Past the batch's last moment to start a send (a slow read before the call), rather than a failed read.</summary>
    public bool WindowClosed { get; init; }

    /// <summary>The batch's last start (BatchProcessor: lease − send timeout − grace) passed <paramref name="when"/>.</summary>
    public static SendNotStartedException PastLastStart(string when) =>
        new($"the batch's time to start sends ran out {when}") { WindowClosed = true };

    /// <summary>The worker began to stop while the send waited to start (for attachment memory).</summary>
    public bool Stopping { get; init; }

    public SendNotStartedException()
    {
    }

    public SendNotStartedException(string message)
        : base(message)
    {
    }

    public SendNotStartedException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
