using System.Globalization;

namespace OutboxComms.Benchmarks.Infrastructure;

/// <summary>
/// CPU time and memory of processes, read from Linux's /proc, so the report can say where the
/// time went: our worker processes, PostgreSQL, the harness itself, or other load on the box.
/// Everything returns null when /proc is not there.
/// </summary>
internal static class ProcFs
{
    // USER_HZ: the unit of the CPU counters in /proc, 100 on every Linux architecture .NET runs on.
    private const double TicksPerSecond = 100;

    /// <summary>User + system CPU of a process; with <paramref name="reapedChildren"/> also of the children it has waited for.</summary>
    public static TimeSpan? Cpu(int pid, bool reapedChildren = false)
    {
        var fields = StatFields(pid);
        if (fields is null)
        {
            return null;
        }
        // Fields after the command name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
        var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        if (reapedChildren)
        {
            ticks += long.Parse(fields[13], CultureInfo.InvariantCulture) + long.Parse(fields[14], CultureInfo.InvariantCulture);
        }
        return TimeSpan.FromSeconds(ticks / TicksPerSecond);
    }

    public static int? ParentOf(int pid) => StatFields(pid) is { } fields ? int.Parse(fields[1], CultureInfo.InvariantCulture) : null;

    /// <summary>Resident set size (VmRSS) in bytes.</summary>
    public static long? Rss(int pid)
    {
        try
        {
            var line = File.ReadLines($"/proc/{pid}/status").FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
            return line is null ? null : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>
    /// CPU of a process tree one level deep (PostgreSQL: the postmaster, every live backend and
    /// auxiliary process, and those that already exited, which the postmaster has reaped).
    /// </summary>
    public static TimeSpan? TreeCpu(int parent)
    {
        if (Cpu(parent, reapedChildren: true) is not { } total)
        {
            return null;
        }
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(directory), out var pid) && ParentOf(pid) == parent && Cpu(pid) is { } cpu)
            {
                total += cpu;
            }
        }
        return total;
    }

    /// <summary>Busy and total CPU time of the whole machine (all cores), from /proc/stat.</summary>
    public static (TimeSpan Busy, TimeSpan Total)? Machine()
    {
        try
        {
            var parts = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries)[1..]
                .Select(p => long.Parse(p, CultureInfo.InvariantCulture)).ToArray();
            // user nice system idle iowait irq softirq steal [guest guest_nice, already counted in user/nice]
            var total = parts.Take(8).Sum();
            var idle = parts[3] + parts[4];
            return (TimeSpan.FromSeconds((total - idle) / TicksPerSecond), TimeSpan.FromSeconds(total / TicksPerSecond));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }

    private static string[]? StatFields(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            // The command name is in parentheses and may itself contain spaces or parentheses.
            return stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
