namespace OutboxComms.Worker.Dispatch;

/// <summary>
/// The host whose clock this worker runs on, as <c>worker_clocks</c> names it: its workers share
/// that clock, so they cast one vote between them (ClockDecision.Judge). Linux's boot id, which
/// changes at every boot and which a container reads from its host's kernel (replicas on one host
/// share it, as they share its clock); elsewhere the machine's name (a container's own hostname,
/// so there replicas on one host count apart).
/// </summary>
internal sealed record WorkerHost(string Id)
{
    private const string BootIdPath = "/proc/sys/kernel/random/boot_id";

    public static WorkerHost OfThisMachine()
    {
        try
        {
            if (File.Exists(BootIdPath) && File.ReadAllText(BootIdPath).Trim() is { Length: > 0 } bootId)
            {
                return new WorkerHost($"boot:{bootId}");
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return new WorkerHost($"machine:{Environment.MachineName}");
    }
}
