using OutboxComms.Core.Data;
using OutboxComms.Worker.Dispatch;

namespace OutboxComms.Worker;

public static class WorkerExtensions
{
    public static IHostApplicationBuilder AddWorkerServices(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddOutboxDatabase();
        builder.AddDispatch();
        return builder;
    }
}
