using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using OutboxComms.Core.Data;
using Testcontainers.PostgreSql;

[assembly: AssemblyFixture(typeof(OutboxComms.Tests.Infrastructure.PostgresServer))]

namespace OutboxComms.Tests.Infrastructure;

/// <summary>
/// One real PostgreSQL server for the whole test run, found in this order:
/// <list type="number">
/// <item><c>OUTBOXCOMMS_TEST_DATABASE</c>: a connection string to a server you run (needs CREATEDB);
/// an explicit choice wins.</item>
/// <item>Testcontainers, when a Docker engine answers.</item>
/// <item>A throwaway local cluster from the PostgreSQL binaries (Debian's <c>postgresql</c>
/// package), in a temp directory on a free port, run as a non-root user because initdb refuses root.</item>
/// </list>
/// A migrated template database is built once; each test class clones it (<see cref="CreateDatabaseAsync"/>).
/// </summary>
public sealed class PostgresServer : IAsyncLifetime
{
    private const string TemplateName = "outbox_template";
    private PostgreSqlContainer? container;
    private LocalCluster? cluster;
    private int databaseCounter;

    /// <summary>Connection string of the maintenance database (postgres), with rights to create databases.</summary>
    public string AdminConnectionString { get; private set; } = "";

    public string Source { get; private set; } = "";

    public async ValueTask InitializeAsync()
    {
        var configured = Environment.GetEnvironmentVariable("OUTBOXCOMMS_TEST_DATABASE");
        if (!string.IsNullOrWhiteSpace(configured))
        {
            AdminConnectionString = configured;
            Source = "OUTBOXCOMMS_TEST_DATABASE";
        }
        else if (await DockerAnswersAsync())
        {
            container = new PostgreSqlBuilder("postgres:16-alpine").Build();
            await container.StartAsync();
            AdminConnectionString = container.GetConnectionString();
            Source = "Testcontainers";
        }
        else
        {
            cluster = await LocalCluster.StartAsync();
            AdminConnectionString = cluster.ConnectionString;
            Source = $"local cluster ({cluster.BinDirectory})";
        }

        await ExecuteAdminAsync($"DROP DATABASE IF EXISTS {TemplateName} WITH (FORCE)");
        await ExecuteAdminAsync($"CREATE DATABASE {TemplateName}");
        await using (var templateSource = NpgsqlDataSource.Create(ConnectionStringFor(TemplateName, pooling: false)))
        {
            await new SchemaMigrator(templateSource, NullLogger<SchemaMigrator>.Instance).ApplyAsync(CancellationToken.None);
        }
    }

    /// <summary>A fresh database: migrated (cloned from the template, fast) or empty.</summary>
    public async Task<string> CreateDatabaseAsync(bool migrated = true)
    {
        var name = $"test_{Environment.ProcessId}_{Interlocked.Increment(ref databaseCounter)}";
        await ExecuteAdminAsync(migrated ? $"CREATE DATABASE {name} TEMPLATE {TemplateName}" : $"CREATE DATABASE {name}");
        return ConnectionStringFor(name, pooling: true);
    }

    public async Task DropDatabaseAsync(string connectionString)
    {
        var name = new NpgsqlConnectionStringBuilder(connectionString).Database;
        NpgsqlConnection.ClearAllPools();
        await ExecuteAdminAsync($"DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    }

    public string ConnectionStringFor(string database, bool pooling) =>
        new NpgsqlConnectionStringBuilder(AdminConnectionString) { Database = database, Pooling = pooling }.ConnectionString;

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        if (container is not null)
        {
            await container.DisposeAsync();
        }
        if (cluster is not null)
        {
            await cluster.DisposeAsync();
        }
    }

    private async Task ExecuteAdminAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(AdminConnectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<bool> DockerAnswersAsync()
    {
        var host = Environment.GetEnvironmentVariable("DOCKER_HOST");
        var socket = host is { Length: > 0 } && host.StartsWith("unix://", StringComparison.Ordinal) ? host["unix://".Length..] : "/var/run/docker.sock";
        if (host is { Length: > 0 } && !host.StartsWith("unix://", StringComparison.Ordinal))
        {
            return true; // a remote engine was named explicitly: let Testcontainers use it
        }
        if (!File.Exists(socket))
        {
            return false;
        }
        try
        {
            using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await client.ConnectAsync(new UnixDomainSocketEndPoint(socket), timeout.Token);
            await client.SendAsync("GET /_ping HTTP/1.0\r\n\r\n"u8.ToArray(), SocketFlags.None, timeout.Token);
            var buffer = new byte[64];
            var read = await client.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            return System.Text.Encoding.ASCII.GetString(buffer, 0, read).Contains(" 200 ", StringComparison.Ordinal);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>A PostgreSQL cluster in a temp directory, fsync off (tests need speed, not durability).</summary>
    private sealed class LocalCluster : IAsyncDisposable
    {
        private readonly string directory;
        private readonly string? runAs;

        private LocalCluster(string binDirectory, string directory, string? runAs, int port)
        {
            BinDirectory = binDirectory;
            this.directory = directory;
            this.runAs = runAs;
            ConnectionString = $"Host=127.0.0.1;Port={port};Username=postgres;Database=postgres;Timeout=15";
        }

        public string BinDirectory { get; }

        public string ConnectionString { get; }

        private string DataDirectory => Path.Combine(directory, "data");

        public static async Task<LocalCluster> StartAsync()
        {
            var bin = FindBinDirectory() ?? throw new InvalidOperationException(
                "No PostgreSQL server binaries found (looked for /usr/lib/postgresql/*/bin/initdb). Install Debian's postgresql package " +
                "(ops/test.sh does), start a Docker engine, or set OUTBOXCOMMS_TEST_DATABASE to a connection string.");
            var directory = Directory.CreateTempSubdirectory("outboxcomms-pg-").FullName;
            string? runAs = null;
            if (Environment.UserName == "root")
            {
                runAs = "postgres"; // created by Debian's postgresql package
                await RunAsync(null, "chown", ["-R", $"{runAs}:", directory]);
            }
            var cluster = new LocalCluster(bin, directory, runAs, FreePort());
            await RunAsync(runAs, Path.Combine(bin, "initdb"), ["-D", cluster.DataDirectory, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]);
            var port = new NpgsqlConnectionStringBuilder(cluster.ConnectionString).Port;
            var options = $"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300";
            await RunAsync(runAs, Path.Combine(bin, "pg_ctl"), ["-D", cluster.DataDirectory, "-l", Path.Combine(directory, "server.log"), "-o", options, "-w", "-t", "60", "start"]);
            return cluster;
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                await RunAsync(runAs, Path.Combine(BinDirectory, "pg_ctl"), ["-D", DataDirectory, "-m", "immediate", "-w", "stop"]);
            }
            finally
            {
                Directory.Delete(directory, recursive: true);
            }
        }

        private static string? FindBinDirectory() =>
            Directory.Exists("/usr/lib/postgresql")
                ? Directory.GetDirectories("/usr/lib/postgresql")
                    .Select(d => Path.Combine(d, "bin"))
                    .Where(d => File.Exists(Path.Combine(d, "initdb")))
                    .OrderByDescending(d => int.TryParse(Path.GetFileName(Path.GetDirectoryName(d)), out var v) ? v : 0)
                    .FirstOrDefault()
                : null;

        private static int FreePort()
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }

        private static async Task RunAsync(string? user, string file, string[] arguments)
        {
            var start = new ProcessStartInfo(user is null ? file : "runuser")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            if (user is not null)
            {
                foreach (var a in new[] { "-u", user, "--", file })
                {
                    start.ArgumentList.Add(a);
                }
            }
            foreach (var a in arguments)
            {
                start.ArgumentList.Add(a);
            }
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync();
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} exited with {process.ExitCode}: {await stderr}{await stdout}");
            }
        }
    }
}
