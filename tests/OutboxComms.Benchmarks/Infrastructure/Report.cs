using System.Text;

namespace OutboxComms.Benchmarks.Infrastructure;

/// <summary>One line of the results table.</summary>
internal sealed record ResultRow(string Scenario, string Measure, string Result, Percentiles? Latency, string Target, string Verdict, string Notes);

/// <summary>
/// The results table plus details (query plans, top statements, CPU breakdowns). Rows are printed
/// as they arrive so a long run shows progress; the whole report is written at the end.
/// </summary>
internal sealed class Report(MachineInfo machine, BenchOptions options)
{
    private readonly List<ResultRow> rows = [];
    private readonly List<(string Title, string Body)> details = [];
    private readonly List<(string Before, double Milliseconds)> hostSpeed = [];

    public bool Failed { get; private set; }

    public void Add(ResultRow row)
    {
        rows.Add(row);
        Console.Out.WriteLine($"  => {row.Scenario} | {row.Measure}: {row.Result}"
            + (row.Latency is { } l ? $" (p50 {Stats.Ms(l.P50)}, p95 {Stats.Ms(l.P95)}, p99 {Stats.Ms(l.P99)})" : "")
            + (row.Verdict.Length > 0 ? $" [{row.Verdict}]" : "")
            + (row.Notes.Length > 0 ? $" — {row.Notes}" : ""));
    }

    /// <summary>The reference query's time before a scenario (see <see cref="BenchDatabase.ReferenceQueryMillisecondsAsync"/>).</summary>
    public void HostSpeed(string before, double milliseconds)
    {
        hostSpeed.Add((before, milliseconds));
        Console.Out.WriteLine($"  reference query {Stats.Fixed(milliseconds, "0")} ms");
    }

    public void Skip(string scenario, string why) => Add(new ResultRow(scenario, "skipped", why, null, "", "", ""));

    public void Fail(string scenario, Exception error)
    {
        Failed = true;
        Add(new ResultRow(scenario, "FAILED", $"{error.GetType().Name}: {error.Message}", null, "", "", ""));
        details.Add(($"{scenario}: failure", "```\n" + error + "\n```"));
    }

    public void Detail(string title, string body)
    {
        details.Add((title, body));
        Console.Out.WriteLine($"--- {title}\n{body}");
    }

    /// <summary>"met" or "missed: N % of target" against a lower bound (rates) or an upper bound (latency, memory).</summary>
    public string Verdict(double value, double target, bool higherIsBetter)
    {
        if (options.Smoke)
        {
            return "smoke size, not judged";
        }
        var met = higherIsBetter ? value >= target : value <= target;
        return met ? "met" : higherIsBetter
            ? $"missed: {Stats.Fixed(100 * value / target, "0.#")} % of target"
            : $"missed: {Stats.Fixed(value / target, "0.0")}× the limit";
    }

    public string Table()
    {
        var table = new StringBuilder();
        table.AppendLine("| Scenario | Measure | Result | p50 | p95 | p99 | Target | Verdict | Notes |");
        table.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- |");
        foreach (var row in rows)
        {
            var l = row.Latency;
            table.AppendLine($"| {row.Scenario} | {row.Measure} | {row.Result} | {(l is null ? "" : Stats.Ms(l.P50))} | {(l is null ? "" : Stats.Ms(l.P95))} | {(l is null ? "" : Stats.Ms(l.P99))} | {row.Target} | {row.Verdict} | {row.Notes.Replace("|", "\\|", StringComparison.Ordinal)} |");
        }
        return table.ToString();
    }

    public string Markdown(TimeSpan elapsed)
    {
        var text = new StringBuilder();
        text.AppendLine($"# OutboxComms benchmark{(options.Smoke ? " (smoke size: numbers mean nothing)" : "")}");
        text.AppendLine();
        text.AppendLine(machine.Describe());
        if (hostSpeed.Count > 0)
        {
            text.AppendLine($"- Host speed: a fixed query (`sum` over `generate_series(1, 2000000)` in PostgreSQL, best of 3) took {string.Join(", ", hostSpeed.Select(h => $"{Stats.Fixed(h.Milliseconds, "0")} ms before {h.Before}"))}: the same work, so a higher figure means a slower (busier) host for that scenario.");
        }
        text.AppendLine($"- Sizes: --rows {Stats.Count(options.Rows)} (dispatch backlog {Stats.Count(options.Rows)}, single-row inserts {Stats.Count(options.SingleRowInserts)}, backlog scenario {Stats.Count(options.BacklogRows)} rows); whole run {elapsed.TotalMinutes:0.0} min.");
        text.AppendLine();
        text.Append(Table());
        foreach (var (title, body) in details)
        {
            text.AppendLine();
            text.AppendLine($"## {title}");
            text.AppendLine();
            text.AppendLine(body);
        }
        return text.ToString();
    }
}
