using System.Runtime.InteropServices;
using System.Text;

namespace OutboxComms.Benchmarks.Infrastructure;

/// <summary>What the numbers were measured on: they mean little without it.</summary>
internal sealed record MachineInfo(int Cores, string CpuModel, long MemoryBytes, string Kernel, string PostgresVersion, string ServerSettings, string Runtime)
{
    public static MachineInfo Read(string postgresVersion, string serverSettings)
    {
        var model = ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal)) is { } line
            ? line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim()
            : RuntimeInformation.ProcessArchitecture.ToString();
        var memory = ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemTotal:", StringComparison.Ordinal)) is { } mem
            ? long.Parse(mem.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024
            : 0;
        var kernel = File.Exists("/proc/sys/kernel/osrelease") ? File.ReadAllText("/proc/sys/kernel/osrelease").Trim() : RuntimeInformation.OSDescription;
        return new MachineInfo(Environment.ProcessorCount, model, memory, kernel, postgresVersion, serverSettings, RuntimeInformation.FrameworkDescription);
    }

    public string Describe()
    {
        var text = new StringBuilder();
        text.AppendLine($"- Machine: {Cores} cores ({CpuModel}), {MemoryBytes / 1024.0 / 1024 / 1024:0.0} GiB memory, Linux {Kernel}, {Runtime}; shared with other work (see \"others\" in the CPU breakdowns).");
        text.AppendLine($"- PostgreSQL: {PostgresVersion}, on the same machine, over TCP loopback.");
        if (ServerSettings.Length > 0)
        {
            text.AppendLine($"- Server settings: {ServerSettings}");
        }
        return text.ToString().TrimEnd();
    }

    private static IEnumerable<string> ReadLines(string path) => File.Exists(path) ? File.ReadLines(path) : [];
}
