using System.Diagnostics;
using System.Text;
using System.Text.Json;
using MimeKit;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>Test classes in this collection share one real SMTP server.</summary>
[CollectionDefinition(Name)]
public sealed class SmtpServerCollection : ICollectionFixture<SmtpServerFixture>
{
    public const string Name = "SMTP server";
}

/// <summary>A message as the SMTP server received it: the raw MIME parsed by MimeKit, and its envelope.</summary>
public sealed record ReceivedMail(MimeMessage Message, int Connection, string MailFrom, IReadOnlyList<string> Recipients, string? Login);

/// <summary>
/// A real SMTP server (aiosmtpd, Debian's <c>python3-aiosmtpd</c>, which ops/test.sh installs) running
/// <c>Infrastructure/smtp_server.py</c> on a free loopback port, without TLS, with AUTH PLAIN/LOGIN for
/// <see cref="User"/>/<see cref="Password"/>. It writes every message it accepts to a spool directory read
/// here, and answers real 550/554/451/554 replies for recipients named <c>reject-550…</c>, <c>relay-554…</c>,
/// <c>defer-451…</c>, <c>spam-554…</c>, and 454 to logins named <c>busy…</c>. Tests use unique recipient addresses, so they
/// never see each other's mail.
/// </summary>
public sealed class SmtpServerFixture : IAsyncLifetime
{
    public const string User = "clinic-mailer";
    public const string Password = "correct horse battery staple";
    public const string Host = "127.0.0.1";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    private readonly StringBuilder serverErrors = new();
    private Process? process;

    public int Port { get; private set; }

    public string Spool { get; } = Directory.CreateTempSubdirectory("outboxcomms-smtp-").FullName;

    public async ValueTask InitializeAsync()
    {
        // Debian's interpreter: python3-aiosmtpd installs into its dist-packages, not into other Pythons on PATH.
        var python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        var start = new ProcessStartInfo(python)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { Path.Combine(AppContext.BaseDirectory, "Infrastructure", "smtp_server.py"), "--spool", Spool, "--user", User, "--password", Password })
        {
            start.ArgumentList.Add(argument);
        }
        process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {python}");
        process.ErrorDataReceived += (_, e) =>
        {
            lock (serverErrors)
            {
                serverErrors.AppendLine(e.Data);
            }
        };
        process.BeginErrorReadLine();

        var ready = await process.StandardOutput.ReadLineAsync().WaitAsync(Patience);
        if (ready is null || !ready.StartsWith("READY ", StringComparison.Ordinal))
        {
            await process.WaitForExitAsync().WaitAsync(Patience);
            string errors;
            lock (serverErrors)
            {
                errors = serverErrors.ToString();
            }
            throw new InvalidOperationException(
                $"the SMTP test server did not start (is Debian's python3-aiosmtpd installed? ops/test.sh installs it): {errors}");
        }
        Port = int.Parse(ready["READY ".Length..], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The message the server accepted for <paramref name="recipient"/>, waiting briefly for it.</summary>
    public async Task<ReceivedMail> ReceivedForAsync(string recipient, CancellationToken cancellationToken)
    {
        var deadline = DateTimeOffset.UtcNow + Patience;
        while (true)
        {
            foreach (var path in Directory.EnumerateFiles(Spool, "*.json"))
            {
                using var envelope = JsonDocument.Parse(await File.ReadAllBytesAsync(path, cancellationToken));
                var root = envelope.RootElement;
                var recipients = root.GetProperty("rcpt_tos").EnumerateArray().Select(r => r.GetString()!).ToList();
                if (recipients.Contains(recipient, StringComparer.OrdinalIgnoreCase))
                {
                    var message = await MimeMessage.LoadAsync(Path.ChangeExtension(path, ".eml"), cancellationToken);
                    return new ReceivedMail(message, root.GetProperty("connection").GetInt32(), root.GetProperty("mail_from").GetString()!, recipients,
                        root.GetProperty("login").GetString());
                }
            }
            if (DateTimeOffset.UtcNow > deadline)
            {
                throw new TimeoutException($"the SMTP server received nothing for {recipient}");
            }
            await Task.Delay(50, cancellationToken);
        }
    }

    /// <summary>How many messages the server has stored for <paramref name="recipient"/> so far (no waiting).</summary>
    public async Task<int> CountReceivedAsync(string recipient, CancellationToken cancellationToken)
    {
        var count = 0;
        foreach (var path in Directory.EnumerateFiles(Spool, "*.json"))
        {
            using var envelope = JsonDocument.Parse(await File.ReadAllBytesAsync(path, cancellationToken));
            if (envelope.RootElement.GetProperty("rcpt_tos").EnumerateArray().Any(r => string.Equals(r.GetString(), recipient, StringComparison.OrdinalIgnoreCase)))
            {
                count++;
            }
        }
        return count;
    }

    /// <summary>Whether the server has seen client connection <paramref name="connection"/> close.</summary>
    public async Task<bool> SawClosedAsync(int connection, CancellationToken cancellationToken)
    {
        var log = Path.Combine(Spool, "connections.log");
        var closed = $"closed {connection}";
        var deadline = DateTimeOffset.UtcNow + Patience;
        while (true)
        {
            if (File.Exists(log) && (await File.ReadAllLinesAsync(log, cancellationToken)).Contains(closed))
            {
                return true;
            }
            if (DateTimeOffset.UtcNow > deadline)
            {
                return false;
            }
            await Task.Delay(50, cancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (process is not null)
        {
            // The script stops when its standard input closes.
            process.StandardInput.Close();
            try
            {
                await process.WaitForExitAsync().WaitAsync(Patience);
            }
            catch (TimeoutException)
            {
                process.Kill(entireProcessTree: true);
            }
            process.Dispose();
        }
        Directory.Delete(Spool, recursive: true);
    }
}
