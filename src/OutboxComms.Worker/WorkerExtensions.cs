using OutboxComms.Core.Data;

namespace OutboxComms.Worker;

public static class WorkerExtensions
{
    public static IHostApplicationBuilder AddWorkerServices(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddOutboxDatabase();
        return builder;
    }
}
