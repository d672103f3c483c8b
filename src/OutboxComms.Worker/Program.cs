namespace OutboxComms.Worker;

internal static class Program
{
    public static Task<int> Main(string[] args) => WorkerCommands.RunAsync(args);
}
