using System.Globalization;

namespace OutboxComms.Benchmarks;

/// <summary>
/// Command line of the harness. One number, <see cref="Rows"/>, scales every scenario (the
/// dispatch backlog; the 1M backlog scenario is five times it), so a run is easy to shrink.
/// </summary>
internal sealed class BenchOptions
{
    public const string Usage = """
        Usage: OutboxComms.Benchmarks --connection <admin connection string> [options]
          --smoke              tiny sizes (about a minute), to keep the harness working in CI
          --rows N             dispatch backlog and enqueue size (default 200000; smoke 2000);
                               the backlog scenario uses 5 x N rows (1,000,000 by default)
          --scenario NAME      run only these (repeatable or comma-separated):
                               enqueue, api, dispatch, latency, backlog
          --workers LIST       worker process counts for dispatch (default 1,2,4)
          --providers LIST     dispatch providers to run: noop, whatsapp (default both)
          --out FILE           write the markdown report here (default bench-results/latest.md)
          --api-dll FILE       OutboxComms.Api.dll, for the API enqueue scenario
          --settings TEXT      one line describing the PostgreSQL settings, for the report
        """;

    public static readonly string[] AllScenarios = ["enqueue", "api", "dispatch", "latency", "backlog"];
    public static readonly string[] AllProviders = ["noop", "whatsapp"];

    public required string Connection { get; init; }
    public bool Smoke { get; init; }
    public int Rows { get; init; }
    public IReadOnlySet<string> Scenarios { get; init; } = new HashSet<string>(AllScenarios);
    public IReadOnlyList<int> WorkerCounts { get; init; } = [1, 2, 4];
    public IReadOnlySet<string> Providers { get; init; } = new HashSet<string>(AllProviders);
    public string Output { get; init; } = Path.Combine("bench-results", "latest.md");
    public string? ApiDll { get; init; }
    public string ServerSettings { get; init; } = "";

    public int SingleRowInserts => Math.Max(200, Rows / 4);
    public int BacklogRows => Rows * 5;
    public int Customers => Math.Max(200, Rows / 10);
    public int IdleLatencySamples => Smoke ? 30 : 500;
    public TimeSpan LoadedLatencyDuration => Smoke ? TimeSpan.FromSeconds(4) : TimeSpan.FromSeconds(30);
    public int TimedClaims => Smoke ? 20 : 200;
    public TimeSpan RssDrainDuration => Smoke ? TimeSpan.FromSeconds(6) : TimeSpan.FromSeconds(30);
    public int ApiSingleRequests => Smoke ? 200 : 20_000;
    // Tiered compilation with dynamic PGO settles slowly under 32 concurrent clients: after 5,000
    // requests the API still spent ~300 µs of CPU per single request, after 60,000 ~110 µs.
    public int ApiWarmupRequests => Smoke ? 50 : 60_000;
    // With 40 bulk warm-up requests the tiered-compilation thread still took 32 % of the API's CPU
    // during the measured requests (perf); with 400, 0.2 %.
    public int ApiBulkWarmupRequests => Smoke ? 2 : 400;

    public bool Runs(string scenario) => Scenarios.Contains(scenario);

    public static BenchOptions? Parse(string[] args, TextWriter error)
    {
        string? connection = Environment.GetEnvironmentVariable("OUTBOXCOMMS_BENCH_DATABASE");
        var smoke = false;
        int? rows = null;
        var scenarios = new HashSet<string>(StringComparer.Ordinal);
        IReadOnlyList<int> workers = [1, 2, 4];
        var providers = new HashSet<string>(StringComparer.Ordinal);
        var output = Path.Combine("bench-results", "latest.md");
        string? apiDll = null;
        var settings = "";
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            try
            {
                switch (args[i])
                {
                    case "--connection": connection = Next(); break;
                    case "--smoke": smoke = true; break;
                    case "--rows": rows = int.Parse(Next(), NumberStyles.AllowThousands, CultureInfo.InvariantCulture); break;
                    case "--scenario": AddNames(Next(), AllScenarios, "scenario", scenarios); break;
                    case "--workers":
                        workers = [.. Next().Split(',').Select(w => int.Parse(w, CultureInfo.InvariantCulture))];
                        break;
                    case "--providers": AddNames(Next(), AllProviders, "provider", providers); break;
                    case "--out": output = Next(); break;
                    case "--api-dll": apiDll = Next(); break;
                    case "--settings": settings = Next(); break;
                    case "-h" or "--help":
                        error.WriteLine(Usage);
                        return null;
                    default: throw new ArgumentException($"unknown option '{args[i]}'");
                }
            }
            catch (Exception ex) when (ex is ArgumentException or FormatException or OverflowException)
            {
                error.WriteLine($"error: {ex.Message}\n{Usage}");
                return null;
            }
        }
        if (string.IsNullOrWhiteSpace(connection))
        {
            error.WriteLine($"error: give --connection (or OUTBOXCOMMS_BENCH_DATABASE); ops/bench.sh starts a server and does.\n{Usage}");
            return null;
        }
        if (rows is < 100 || workers.Any(w => w is < 1 or > 16))
        {
            error.WriteLine("error: --rows must be at least 100 and --workers between 1 and 16.");
            return null;
        }
        return new BenchOptions
        {
            Connection = connection,
            Smoke = smoke,
            Rows = rows ?? (smoke ? 2_000 : 200_000),
            Scenarios = scenarios.Count == 0 ? new HashSet<string>(AllScenarios) : scenarios,
            WorkerCounts = workers,
            Providers = providers.Count == 0 ? new HashSet<string>(AllProviders) : providers,
            Output = output,
            ApiDll = apiDll,
            ServerSettings = settings,
        };
    }

    private static void AddNames(string list, string[] known, string what, HashSet<string> into)
    {
        foreach (var name in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!known.Contains(name))
            {
                throw new ArgumentException($"unknown {what} '{name}' (known: {string.Join(", ", known)})");
            }
            into.Add(name);
        }
    }
}
