namespace OutboxComms.Benchmarks.Infrastructure;

/// <summary>What every scenario works with, and what one scenario measured for a later one.</summary>
internal sealed class Bench(BenchOptions options, BenchDatabase db, Practices practices, Report report, string encryptionKey)
{
    public BenchOptions Options => options;
    public BenchDatabase Db => db;
    public Practices Practices => practices;
    public Report Report => report;
    public string EncryptionKey => encryptionKey;

    /// <summary>Steady dispatch rate of one worker process with the no-op provider, once measured.</summary>
    public double? OneWorkerNoOpRate { get; set; }

    public WorkerFleet StartWorkers(int count, string provider) => WorkerFleet.Start(count, db.ConnectionString, encryptionKey, provider);
}
