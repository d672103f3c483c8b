namespace OutboxComms.Worker.Scheduling;

public static class SchedulingExtensions
{
    /// <summary>The scheduler: options (validated at start), SQL store, one pass per DI scope, the loop.</summary>
    public static IHostApplicationBuilder AddScheduling(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddOptions<SchedulingOptions>().BindConfiguration(SchedulingOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<WorkflowStore>();
        builder.Services.AddScoped<WorkflowScheduler>();
        builder.Services.AddHostedService<SchedulerLoop>();
        return builder;
    }
}
