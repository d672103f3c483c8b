using System.Globalization;

namespace OutboxComms.Benchmarks.Infrastructure;

/// <summary>Percentiles (nearest rank) and the number formats the report uses.</summary>
internal static class Stats
{
    public static Percentiles Of(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0)
        {
            return new Percentiles(0, double.NaN, double.NaN, double.NaN, double.NaN);
        }
        double Rank(double p) => sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];
        return new Percentiles(sorted.Length, Rank(0.50), Rank(0.95), Rank(0.99), sorted[^1]);
    }

    public static string Count(double value) => value.ToString("N0", CultureInfo.InvariantCulture);

    public static string Ms(double value) => double.IsNaN(value)
        ? "—"
        : value.ToString(value < 10 ? "0.00" : "0.0", CultureInfo.InvariantCulture) + " ms";

    public static string Mb(long bytes) => (bytes / 1024.0 / 1024.0).ToString("0", CultureInfo.InvariantCulture) + " MB";

    public static string Fixed(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);
}

internal sealed record Percentiles(int Count, double P50, double P95, double P99, double Max);
