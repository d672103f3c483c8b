using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using OutboxComms.Benchmarks.Infrastructure;

namespace OutboxComms.Benchmarks.Scenarios;

/// <summary>
/// Enqueue through the REST API: <c>POST /v1/messages</c> from 32 concurrent clients, and
/// <c>POST /v1/messages/bulk</c> with 1,000 messages per request. The API runs as its own process
/// (the Release OutboxComms.Api.dll, production configuration, the per-key rate limit raised out
/// of the way), the tenant is created through <c>POST /v1/companies</c> with the admin key, and
/// no worker runs meanwhile.
/// <para>
/// The scenario switches itself on when the API's OpenAPI document has <c>/v1/messages</c>; until
/// the messages API is merged it prints "not available in this build". The request bodies are the
/// one part to check against that API when it lands: see <see cref="SingleMessage"/> and
/// <see cref="BulkRequest"/>.
/// </para>
/// </summary>
internal static class ApiEnqueueScenario
{
    private const string Name = "Enqueue, REST API";
    private const int Clients = 32;
    private const int BulkSize = 1_000;
    // Each bulk request is two round trips (lookup, INSERT) with the API's own work between them:
    // with 4 clients the two cores were 1.72-1.77 busy, with 8 1.85-1.88.
    private const int BulkClients = 8;

    public static async Task RunAsync(Bench bench)
    {
        if (bench.Options.ApiDll is not { } dll || !File.Exists(dll))
        {
            NotAvailable(bench, "no API build given (--api-dll)");
            return;
        }
        await using var api = await ApiProcess.StartAsync(dll, bench);
        var openApi = await api.Client.GetStringAsync(new Uri("/openapi/v1.json", UriKind.Relative));
        if (!openApi.Contains("\"/v1/messages\"", StringComparison.Ordinal) || !openApi.Contains("\"/v1/messages/bulk\"", StringComparison.Ordinal))
        {
            NotAvailable(bench, "the API has no POST /v1/messages and /v1/messages/bulk yet");
            return;
        }

        var (companyId, key) = await api.CreateCompanyAsync();
        var customers = await SeedCustomersAsync(bench, companyId);
        using var client = api.NewClient(key, Clients);
        await bench.Db.ResetMessagesAsync();
        await SingleAsync(bench, client, customers);
        await bench.Db.ResetMessagesAsync();
        await BulkAsync(bench, client, customers);
        await bench.Db.ResetMessagesAsync();
    }

    // ---- request shapes (HOOK: match these to the messages API when it is merged) -------------

    /// <summary>One message as <c>POST /v1/messages</c> takes it.</summary>
    private static JsonObject SingleMessage(Guid customerId, long i) => new()
    {
        ["customerId"] = customerId,
        ["type"] = "INVOICE",
        ["channel"] = "EMAIL",
        ["subject"] = $"Invoice INV-2026-{i:000000}",
        ["content"] = $"Dear client, your invoice INV-2026-{i:000000} for INR 11,800.00 is attached.",
    };

    /// <summary>The body of <c>POST /v1/messages/bulk</c>.</summary>
    private static JsonObject BulkRequest(IEnumerable<JsonObject> messages) => new() { ["messages"] = new JsonArray([.. messages]) };

    // -------------------------------------------------------------------------------------------

    private static async Task SingleAsync(Bench bench, HttpClient client, IReadOnlyList<Guid> customers)
    {
        var total = bench.Options.ApiSingleRequests;
        // A long-running API is past its JIT: warm it up (tiered compilation settles) before measuring.
        var warmup = bench.Options.ApiWarmupRequests;
        await ClosedLoop.RunAsync(Clients, warmup, i => PostAsync(client, "/v1/messages", SingleMessage(customers[(int)(i % customers.Count)], -1 - i)));
        await bench.Db.ResetStatementStatsAsync();
        var window = await LoadWindow.StartAsync(bench.Db);
        var (rate, latency) = await ClosedLoop.RunAsync(Clients, total, i =>
            PostAsync(client, "/v1/messages", SingleMessage(customers[(int)(i % customers.Count)], i)));
        var usage = await window.StopAsync();
        bench.Report.Add(new ResultRow(Name, $"POST /v1/messages, {Clients} concurrent clients", $"{Stats.Count(rate)} req/s", latency,
            "≥ 5,000 req/s", bench.Report.Verdict(rate, 5_000, higherIsBetter: true), $"{Stats.Count(total)} requests after {Stats.Count(warmup)} unmeasured warm-up requests; the API process counts as other processes. {usage.Describe(total, "request")}"));
        bench.Report.Detail($"POST /v1/messages, {Clients} clients: top statements (pg_stat_statements, server time)", await bench.Db.TopStatementsAsync());
    }

    private static async Task BulkAsync(Bench bench, HttpClient client, IReadOnlyList<Guid> customers)
    {
        var requests = Math.Max(2, bench.Options.Rows / BulkSize);
        await ClosedLoop.RunAsync(BulkClients, bench.Options.ApiBulkWarmupRequests, r =>
            PostAsync(client, "/v1/messages/bulk", BulkRequest(Enumerable.Range(0, BulkSize).Select(j => SingleMessage(customers[(int)((r * BulkSize + j) % customers.Count)], -1 - j)))));
        // The measured requests' bodies are serialized before the clock starts: the harness shares the
        // machine's two cores with the API and PostgreSQL, and building 1,000 messages' JSON per request
        // cost it ~2 µs per row (a load generator normally replays prepared bodies).
        var bodies = Enumerable.Range(0, requests).Select(r => JsonSerializer.SerializeToUtf8Bytes(
            BulkRequest(Enumerable.Range(0, BulkSize).Select(j => SingleMessage(customers[(r * BulkSize + j) % customers.Count], (long)r * BulkSize + j))))).ToArray();
        await bench.Db.ResetStatementStatsAsync();
        var window = await LoadWindow.StartAsync(bench.Db);
        var (perSecond, latency) = await ClosedLoop.RunAsync(BulkClients, requests, r => PostAsync(client, "/v1/messages/bulk", bodies[r]));
        var usage = await window.StopAsync();
        var rate = perSecond * BulkSize;
        bench.Report.Add(new ResultRow(Name, $"POST /v1/messages/bulk, {Stats.Count(BulkSize)} per request, {BulkClients} concurrent clients", $"{Stats.Count(rate)} rows/s", latency,
            "≥ 100,000 rows/s", bench.Report.Verdict(rate, 100_000, higherIsBetter: true), $"{Stats.Count(requests)} requests after {Stats.Count(bench.Options.ApiBulkWarmupRequests)} unmeasured warm-up requests; latency per request (bodies serialized beforehand). {usage.Describe(requests * BulkSize, "row")}"));
        bench.Report.Detail($"POST /v1/messages/bulk, {Stats.Count(BulkSize)} per request: top statements (pg_stat_statements, server time)", await bench.Db.TopStatementsAsync());
    }

    private static async Task PostAsync(HttpClient client, string path, JsonObject body)
    {
        using var response = await client.PostAsJsonAsync(new Uri(path, UriKind.Relative), body);
        await EnsureAcceptedAsync(response);
    }

    private static async Task PostAsync(HttpClient client, string path, byte[] body)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await client.PostAsync(new Uri(path, UriKind.Relative), content);
        await EnsureAcceptedAsync(response);
    }

    private static void NotAvailable(Bench bench, string why)
    {
        Console.Out.WriteLine($"  API enqueue: not available in this build ({why})");
        bench.Report.Add(new ResultRow(Name, "POST /v1/messages (32 clients), /v1/messages/bulk (1,000 per request)", "not available in this build", null,
            "≥ 5,000 req/s; ≥ 100,000 rows/s", "", why));
    }

    private static async Task EnsureAcceptedAsync(HttpResponseMessage response)
    {
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"{response.RequestMessage?.RequestUri?.AbsolutePath} answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        }
    }

    private static async Task<IReadOnlyList<Guid>> SeedCustomersAsync(Bench bench, Guid companyId)
    {
        var customers = new List<Guid>();
        await using var command = bench.Db.DataSource.CreateCommand("""
            INSERT INTO customers (company_id, external_id, name, email)
            SELECT $1, 'API-' || g, 'API client ' || g, 'api' || g || '@client.example.in' FROM generate_series(1, 1000) g
            RETURNING id
            """);
        command.Parameters.AddWithValue(companyId);
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            customers.Add(reader.GetGuid(0));
        }
        return customers;
    }

    /// <summary>The API as its own process on a free loopback port, stopped (killed) when disposed.</summary>
    private sealed class ApiProcess : IAsyncDisposable
    {
        private readonly Process process;
        private readonly string adminKey;

        private ApiProcess(Process process, Uri baseAddress, string adminKey)
        {
            this.process = process;
            this.adminKey = adminKey;
            BaseAddress = baseAddress;
            Client = new HttpClient { BaseAddress = baseAddress };
        }

        public Uri BaseAddress { get; }

        public HttpClient Client { get; }

        public static async Task<ApiProcess> StartAsync(string dll, Bench bench)
        {
            var baseAddress = new Uri($"http://127.0.0.1:{FreePort()}/");
            var adminKey = "oc_admin_bench_" + Guid.NewGuid().ToString("N");
            var start = new ProcessStartInfo("dotnet") { UseShellExecute = false };
            foreach (var argument in new[] { dll, "--urls", baseAddress.ToString().TrimEnd('/') })
            {
                start.ArgumentList.Add(argument);
            }
            start.Environment["ConnectionStrings__Outbox"] = bench.Db.ConnectionString;
            start.Environment["OUTBOXCOMMS_ADMIN_KEY"] = adminKey;
            start.Environment["OUTBOXCOMMS_ENCRYPTION_KEY"] = bench.EncryptionKey;
            start.Environment["Api__RateLimitPerSecond"] = "10000000";
            start.Environment["Logging__LogLevel__Default"] = "Warning";
            var api = new ApiProcess(Process.Start(start)!, baseAddress, adminKey);
            var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 60;
            while (true)
            {
                try
                {
                    using var ready = await api.Client.GetAsync(new Uri("/health/ready", UriKind.Relative));
                    if (ready.IsSuccessStatusCode)
                    {
                        return api;
                    }
                }
                catch (HttpRequestException)
                {
                    // not listening yet
                }
                if (api.process.HasExited || Stopwatch.GetTimestamp() > deadline)
                {
                    await api.DisposeAsync();
                    throw new InvalidOperationException("the API did not become ready within 60 s");
                }
                await Task.Delay(200);
            }
        }

        /// <summary>Creates a practice through the API with the admin key; returns its id and API key.</summary>
        public async Task<(Guid CompanyId, string Key)> CreateCompanyAsync()
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri("/v1/companies", UriKind.Relative))
            {
                Content = JsonContent.Create(new { name = "Bench API practice" }),
            };
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", adminKey);
            using var response = await Client.SendAsync(request);
            await EnsureAcceptedAsync(response);
            using var created = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            return (created.RootElement.GetProperty("company").GetProperty("id").GetGuid(), created.RootElement.GetProperty("apiKey").GetProperty("key").GetString()!);
        }

        public HttpClient NewClient(string key, int connections)
        {
            var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = connections }) { BaseAddress = BaseAddress };
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
            return client;
        }

        public async ValueTask DisposeAsync()
        {
            Client.Dispose();
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }
            process.Dispose();
        }

        private static int FreePort()
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }
    }
}
